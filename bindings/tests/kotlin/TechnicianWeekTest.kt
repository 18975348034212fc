// A technician's week through the Kotlin bindings on the JVM, against a live
// server (the Python test_technician_week plays the same week): a checklist
// of every question kind with a show-if branch, a serialized part taken from
// the van the office filled (the balance goes down and the serial leaves the
// van), a running time entry stopped, the job completed with its resolution,
// and a timer stopped on the phone and on the tablet offline whose clashing
// end the technician settles from the app; then a part booked on the tablet
// after the phone declined the assignment, refused by the server and
// restored once the office re-dispatches it. The manager's device sees it.
import org.fieldsync.core.*
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files

fun main() {
    var passed = 0
    var failed = 0
    fun test(name: String, body: () -> Unit) {
        try {
            body()
            passed++
            println("ok   $name")
        } catch (e: Throwable) {
            failed++
            println("FAIL $name: $e")
            e.printStackTrace()
        }
    }
    val url = System.getenv("FIELDSYNC_TEST_URL") ?: error("FIELDSYNC_TEST_URL is not set; run `cargo xtask test`")
    val org = System.getenv("FIELDSYNC_TEST_ORG") ?: "demo"
    val password = System.getenv("FIELDSYNC_TEST_PASSWORD") ?: "fieldsync-demo"
    val dir = Files.createTempDirectory("fieldsync-kt-tech-")
    val hour = 3_600_000L
    fun client(name: String, email: String): FieldsyncClient {
        val c = FieldsyncClient.open("$dir/$name.db", url)
        c.login(org, email, password, "android", "test-1.0")
        return c
    }
    fun FieldsyncClient.synced(): SyncSummary {
        val s = sync(null)
        check(s.rejected == 0uL) { "rejected: ${rejections()}" }
        return s
    }
    fun expect(kind: String, body: () -> Unit): FieldsyncException {
        try {
            body()
        } catch (e: FieldsyncException) {
            check(e::class.simpleName == kind) { "expected $kind, got $e" }
            return e
        }
        error("expected $kind, nothing was thrown")
    }
    val http = HttpClient.newHttpClient()
    // The office's JSON API with the manager's token: (status, body).
    fun office(manager: FieldsyncClient, method: String, path: String, json: String?): Pair<Int, String> {
        val token = manager.tokens()?.accessToken ?: error("the manager is logged in")
        val req = HttpRequest.newBuilder(URI.create(url + path)).header("Authorization", "Bearer $token")
        val built = if (json == null) {
            req.GET().build()
        } else {
            req.header("Content-Type", "application/json").POST(HttpRequest.BodyPublishers.ofString(json)).build()
        }
        val resp = http.send(built, HttpResponse.BodyHandlers.ofString())
        return resp.statusCode() to resp.body()
    }
    fun q(key: String, pos: Int, text: String, kind: QuestionKindItem, required: Boolean = true,
          choices: List<String> = emptyList(), showIf: Pair<String, String>? = null) =
        QuestionItem(key, pos.toUInt(), text, kind, choices, required, showIf?.first, showIf?.second)

    // One device each (two for the technician): logins are rate limited per user.
    val manager = client("manager", "manager@demo.example")
    val phone = client("phone", "tech1@demo.example")
    val tablet = client("tablet", "tech1@demo.example")

    test("a technician's week: checklist, a part from the van, time, job completed, a clash settled") {
        manager.synced()
        val techId = phone.session()?.userId ?: error("logged in")
        val sku = "KT-VALVE-" + System.nanoTime().toString(36)
        val valve = manager.createProduct(sku, "Kotlin drain valve", "pcs", true, true)
        expect("Transition") { phone.createProduct("KT-NOPE", "Not the technician's", "pcs", false, true) }
        val site = manager.createAccount("Kotlin Tech Laundry", GeoFix(38.7310, -9.1410, null))
        val job = manager.createJob(site, "Dryer 2 does not heat.")
        val template = manager.publishChecklist("Dryer service", 4u, listOf(
            q("heats", 1, "Does it heat?", QuestionKindItem.YES_NO),
            q("fault_photo", 2, "Photo of the element", QuestionKindItem.PHOTO, showIf = "heats" to "no"),
            q("part", 3, "Part replaced", QuestionKindItem.CHOICE, choices = listOf("element", "thermostat", "valve")),
            q("temp", 4, "Temperature after (°C)", QuestionKindItem.NUMBER),
            q("remarks", 5, "Remarks", QuestionKindItem.TEXT, required = false),
            q("machine", 6, "Scan the machine", QuestionKindItem.BARCODE),
            q("signed", 7, "Customer's signature", QuestionKindItem.SIGNATURE),
        ))
        val now = System.currentTimeMillis()
        val assignment = manager.assignJob(job, techId, now, now + 4 * hour)
        manager.synced()
        val (status, filled) = office(manager, "POST", "/v1/technicians/$techId/van/replenish",
            """{"product_id": "$valve", "qty": "2", "serials": ["KV-1", "KV-2"]}""")
        check(status == 200) { "replenish: $status $filled" }

        phone.synced()
        val van = phone.vanStock() ?: error("the office's van reached the technician")
        check(van.balances.single { it.productId == valve }.let { it.quantity == 2.0 && it.serials == listOf("KV-1", "KV-2") }) { "$van" }
        phone.advanceAssignment(assignment, AssignmentStep.ACCEPT, null, null)
        val drive = phone.startTime(assignment, TimeKindItem.TRAVEL)
        phone.advanceAssignment(assignment, AssignmentStep.TRAVEL, null, null)
        val here = GeoFix(38.7311, -9.1411, 6.0)
        phone.advanceAssignment(assignment, AssignmentStep.ON_SITE, here, null)
        val stopped = phone.stopTime(assignment, drive, null, "Traffic on the bridge")
        check(stopped.time.single { it.id == drive }.endMs != null)
        expect("Transition") { phone.stopTime(assignment, drive, null, null) }
        phone.advanceAssignment(assignment, AssignmentStep.START_WORK, here, null)

        // The checklist, one question at a time, with its show-if branch.
        var form = phone.startChecklist(template, assignment)
        check("fault_photo" !in form.shownQuestions)
        form = phone.answerQuestion(form.id, "heats", AnswerValueItem.YesNo(false))
        check("fault_photo" in form.shownQuestions) { "show-if: no heat asks for a photo" }
        expect("Validation") { phone.answerQuestion(form.id, "part", AnswerValueItem.Choice("flux capacitor")) }
        expect("Validation") { phone.completeChecklist(form.id) }
        val photo = phone.attachPhoto(assignment, byteArrayOf(0xFF.toByte(), 0xD8.toByte()) + ByteArray(1500) { it.toByte() }, "image/jpeg", null, here)
        val drawn = dir.resolve("signed.png").toFile()
        drawn.writeBytes(byteArrayOf(0x89.toByte(), 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A) + ByteArray(800) { (it * 7).toByte() })
        val signature = phone.attachFile(assignment, drawn.path, "signature", "image/png", null, null)
        for ((key, value) in listOf(
            "fault_photo" to AnswerValueItem.Photo(photo),
            "part" to AnswerValueItem.Choice("valve"),
            "temp" to AnswerValueItem.Number(62.5),
            "remarks" to AnswerValueItem.Text("Lint in the duct; cleaned."),
            "machine" to AnswerValueItem.Barcode("DR-2-99812"),
            "signed" to AnswerValueItem.Signature(signature),
        )) {
            form = phone.answerQuestion(form.id, key, value)
        }
        check(form.missingRequired.isEmpty()) { "${form.missingRequired}" }
        check(phone.completeChecklist(form.id).completed)

        // A serialized part from the van: the balance goes down, the serial leaves it.
        phone.addPart(assignment, valve, 1.0, "KV-2", true, van.id)
        val after = phone.vanStock()!!.balances.single { it.productId == valve }
        check(after.quantity == 1.0 && after.serials == listOf("KV-1")) { "$after" }

        // A timer stopped on the phone and on the tablet while both are offline.
        val timer = phone.startTime(assignment, TimeKindItem.WORK)
        phone.synced()
        tablet.synced()
        phone.stopTime(assignment, timer, null, null)
        Thread.sleep(10)
        tablet.stopTime(assignment, timer, null, null)
        phone.synced()
        tablet.synced()
        phone.synced()
        val clash = phone.conflicts(assignment).single { it.field == "time_entries.$timer.end" }
        check(clash.values.size == 2) { "$clash" }
        expect("Validation") { phone.resolveConflict(assignment, clash.field, "\"neither\"", null) }
        check(phone.resolveConflict(assignment, clash.field, clash.values.last(), null).isEmpty())

        phone.advanceAssignment(assignment, AssignmentStep.COMPLETE, here, null)
        val done = phone.completeJob(job, "Replaced the drain valve; duct cleaned.", true)
        check(done.status == "completed") { "$done" }
        phone.synced()
        check(phone.pendingChanges() == 0uL)

        // The manager's device and the office see it all.
        manager.synced()
        val seen = manager.job(job)
        check(seen.status == "completed" && seen.resolution == "Replaced the drain valve; duct cleaned." && seen.firstTimeFix == true) { "$seen" }
        val a = manager.assignment(assignment)
        check(a.status == "completed" && a.checklistComplete)
        check(a.parts.single().let { it.serial == "KV-2" && it.vanStockId == van.id }) { "${a.parts}" }
        check(manager.conflicts(assignment).isEmpty())
        val answers = manager.checklistsOf(assignment).single().answers.associate { it.question to it.value }
        check(answers["temp"] == AnswerValueItem.Number(62.5) && answers["machine"] == AnswerValueItem.Barcode("DR-2-99812"))
        val (okGet, vanNow) = office(manager, "GET", "/v1/technicians/$techId/van", null)
        check(okGet == 200 && vanNow.contains("\"1.0000\"") && vanNow.contains("KV-1") && !vanNow.contains("\"KV-2\"")) { vanNow }
    }

    test("a part booked on the tablet after the phone declined is restored once the office re-dispatches") {
        manager.synced()
        val techId = phone.session()?.userId ?: error("logged in")
        val site = manager.createAccount("Kotlin Tech Bakery", null)
        val job = manager.createJob(site, "Oven door hinge")
        val now = System.currentTimeMillis()
        val assignment = manager.assignJob(job, techId, now + 2 * hour, now + 3 * hour)
        manager.synced()
        phone.synced()
        tablet.synced()
        phone.advanceAssignment(assignment, AssignmentStep.DECLINE, null, "Van in the garage")
        phone.synced()
        // The tablet, offline, still sees it dispatched and books a hinge.
        val hinge = tablet.searchProducts("", null).first()
        tablet.addPart(assignment, hinge.id, 1.0, null, true, null)
        check(tablet.sync(null).rejected == 1uL)
        val entry = tablet.rejections().single { it.recordId == assignment }
        check(entry.code == "forbidden") { "$entry" }
        check(tablet.assignment(assignment).let { it.status == "rejected" && it.parts.isEmpty() })
        expect("Validation") { tablet.restoreRejection(entry.seq) }
        manager.synced()
        check(manager.advanceAssignment(assignment, AssignmentStep.DISPATCH, null, null).status == "dispatched")
        manager.synced()
        tablet.synced()
        check(tablet.restoreRejection(entry.seq) == assignment)
        check(tablet.rejections().none { it.recordId == assignment })
        tablet.synced()
        manager.synced()
        check(manager.assignment(assignment).parts.single().productId == hinge.id)
    }

    println("$passed passed, $failed failed")
    // A failed run leaves its stores in `dir` for a look; a passed one cleans up.
    if (failed > 0) kotlin.system.exitProcess(1)
    dir.toFile().deleteRecursively()
}
