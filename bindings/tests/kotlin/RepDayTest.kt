// A rep's day through the Kotlin bindings on the JVM, against a live server
// (`cargo xtask test` starts `fieldsync serve` seeded with `fieldsync demo`):
// log in and prime, work offline (account, visit, check-in, order with lines,
// check-out, report), sync; the manager's device sees all of it, requests
// changes, and the rep's device shows the request after its next sync. A
// signed order with a photo: the Wi-Fi policy, the refused ledger, and the
// signature's verdict after a later change.
import org.fieldsync.core.*
import java.nio.file.Files
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit

class Collect : SyncListener {
    val stages = mutableListOf<SyncStage>()
    override fun onProgress(stage: SyncStage, done: ULong) {
        stages.add(stage)
    }
}

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
    val dir = Files.createTempDirectory("fieldsync-kt-")

    test("a rep's offline day reaches the manager, and the review comes back") {
        val rep = FieldsyncClient.open("$dir/rep.db", url)
        val session = rep.login(org, "rep2@demo.example", password, "android", "test-1.0")
        check(session.role == "rep") { "role ${session.role}" }
        val progress = Collect()
        val primed = rep.sync(progress)
        check(primed.primed > 0uL) { "nothing primed" }
        check(SyncStage.PRIMING in progress.stages)
        check(rep.todaysVisits().isNotEmpty()) { "the demo plans visits for today" }

        // Offline from here.
        val shop = GeoFix(38.7220, -9.1390, 5.0)
        val account = rep.createAccount("Kotlin Mini-Mercado", shop)
        val now = System.currentTimeMillis()
        val visit = rep.planVisit(account, now, now + 3_600_000)
        val inVisit = rep.checkIn(visit, GeoFix(38.7221, -9.1391, 8.0))
        check(inVisit.status == "in_progress")
        check((inVisit.checkInDistanceM ?: 999.0) < 150.0) { "inside the geofence" }
        val products = rep.catalogue()
        check(products.size >= 2)
        val order = rep.createOrder(account, "EUR", visit)
        val first = rep.addOrderLine(order, products[0].id, 3.0, 450, 2300u, null)
        rep.addOrderLine(order, products[1].id, 1.0, 1200, 2300u, 500u)
        val extra = rep.addOrderLine(order, products[0].id, 9.0, 450, 2300u, null)
        rep.editOrderLine(order, first, 4.0, null)
        rep.removeOrderLine(order, extra)
        val submitted = rep.submitOrder(order)
        check(submitted.status == "submitted")
        check(submitted.lines.size == 2)
        // 4 × 4.50 + 12.00 − 5 % = 18.00 + 11.40 = 29.40 net, + 23 % tax
        check(submitted.totalMinor == 3616L) { "total ${submitted.totalMinor}" }
        val out = rep.checkOut(visit, GeoFix(38.7221, -9.1391, 8.0), Outcome.ORDER_TAKEN)
        check(out.status == "completed" && out.outcome == "order_taken")
        rep.setVisitNotes(visit, "Owner wants the summer range.")
        val report = rep.writeReport(visit, "Took an order; shelf space agreed.")
        rep.submitReport(report)
        check(rep.pendingChanges() > 0uL)

        val sent = rep.sync(null)
        check(sent.rejected == 0uL) { "rejected: ${rep.rejections()}" }
        check(rep.pendingChanges() == 0uL)

        // A second device: the manager's.
        val manager = FieldsyncClient.open("$dir/manager.db", url)
        manager.login(org, "manager@demo.example", password, "android", "test-1.0")
        manager.sync(null)
        val seen = manager.visit(visit)
        check(seen.status == "completed" && seen.notes == "Owner wants the summer range.")
        val seenOrder = manager.order(order)
        check(seenOrder.lines.size == 2 && seenOrder.totalMinor == 3616L)
        check(manager.orderForAccountCount(account) == 1)
        check(manager.report(report).status == "submitted")
        check(manager.reportsByStatus("submitted").any { it.id == report })

        manager.requestChanges(report, "Add the competitor's prices, please.")
        manager.sync(null)
        rep.sync(null)
        val back = rep.report(report)
        check(back.status == "changes_requested") { "status ${back.status}" }
        check(back.comments == listOf("Add the competitor's prices, please."))
    }

    test("a signed order shows a later change to its lines") {
        val rep = FieldsyncClient.open("$dir/rep-sign.db", url)
        rep.login(org, "rep2@demo.example", password, "android", "test-1.0")
        rep.sync(null)
        val account = rep.createAccount("Kotlin Signature Shop", null)
        val products = rep.catalogue()
        val order = rep.createOrder(account, "EUR", null)
        val line = rep.addOrderLine(order, products[0].id, 2.0, 450, 2300u, null)
        check(rep.orderSignature(order).state == SignatureState.UNSIGNED)
        val here = GeoFix(38.7220, -9.1390, 5.0)
        val drawn = byteArrayOf(0x89.toByte(), 0x50, 0x4e, 0x47) + ByteArray(2_000) { it.toByte() }
        val signed = rep.signOrder(order, "João Pires", drawn, "image/png", "store manager", here)
        check(signed.state == SignatureState.MATCHES) { "state ${signed.state}" }
        check(signed.signerName == "João Pires")
        // A photo of the shelf with its capture time and position.
        val taken = System.currentTimeMillis() - 120_000
        val photo = rep.attachPhoto(order, ByteArray(3 * 1024 * 1024) { (it % 251).toByte() }, "image/jpeg", taken, here)
        val kept = rep.attachmentsOf(order).associateBy { it.sha256 }
        check(kept.keys == setOf(photo, signed.imageSha256)) { "kept ${kept.keys}" }
        check(kept.getValue(photo).capturedAtMs == taken)
        check(kept.getValue(photo).gps?.accuracyM == 5.0)
        // Off Wi-Fi: the large photo waits, the signature goes.
        rep.setUploadLargeAttachments(false)
        val metered = rep.sync(null)
        check(metered.attachmentsUploaded == 1uL && metered.attachmentsPending == 1uL) { "$metered" }
        check(rep.pendingAttachments().map { it.sha256 } == listOf(photo))
        rep.setUploadLargeAttachments(true)
        check(rep.sync(null).attachmentsUploaded == 1uL)
        check(rep.refusedAttachments().isEmpty())
        // What the customer signed is locked for the rep (the server would refuse it too).
        try {
            rep.editOrderLine(order, line, 5.0, null)
            error("the rep changed a signed line")
        } catch (e: FieldsyncException.Validation) {
            check(e.reason.contains("signed")) { e.reason }
        }
        check(rep.orderSignature(order).state == SignatureState.MATCHES)
        rep.sync(null)
        // The office changes the quantity: the signature no longer matches, everywhere.
        val manager = FieldsyncClient.open("$dir/manager-sign.db", url)
        manager.login(org, "manager@demo.example", password, "android", "test-1.0")
        manager.sync(null)
        manager.editOrderLine(order, line, 5.0, null)
        check(manager.sync(null).rejected == 0uL)
        check(manager.orderSignature(order).state == SignatureState.NO_LONGER_MATCHES)
        rep.sync(null)
        val after = rep.orderSignature(order)
        check(after.state == SignatureState.NO_LONGER_MATCHES) { "state ${after.state}" }
        check(after.signedSha256 == signed.signedSha256 && after.currentSha256 != after.signedSha256)
    }

    test("refused actions arrive as typed exceptions") {
        val rep = FieldsyncClient.open("$dir/rep-errors.db", url)
        try {
            rep.login(org, "rep3@demo.example", "wrong password", "android", "test-1.0")
            error("a wrong password logged in")
        } catch (e: FieldsyncException.Auth) {
        }
        rep.login(org, "rep3@demo.example", password, "android", "test-1.0")
        val account = rep.createAccount("Errors Ltd", null)
        val now = System.currentTimeMillis()
        val visit = rep.planVisit(account, now, now + 60_000)
        try {
            rep.checkOut(visit, null, Outcome.NO_ORDER)
            error("checked out of a visit never checked in")
        } catch (e: FieldsyncException.Transition) {
            check(e.reason.isNotEmpty())
        }
        try {
            rep.order("nonsense")
            error("accepted a malformed id")
        } catch (e: FieldsyncException.InvalidArgument) {
        }
    }

    test("live sync brings a change made on another device within seconds") {
        val phone = FieldsyncClient.open("$dir/live-phone.db", url)
        phone.login(org, "rep1@demo.example", password, "android", "test-1.0")
        phone.sync(null)
        val tablet = FieldsyncClient.open("$dir/live-tablet.db", url)
        tablet.login(org, "rep1@demo.example", password, "android", "test-1.0")
        tablet.sync(null)
        val events = LinkedBlockingQueue<LiveSyncEvent>()
        fun waitFor(seconds: Long, want: (LiveSyncEvent) -> Boolean): LiveSyncEvent {
            val deadline = System.nanoTime() + seconds * 1_000_000_000L
            while (true) {
                val left = deadline - System.nanoTime()
                val event = if (left > 0) events.poll(left, TimeUnit.NANOSECONDS) else null
                event ?: error("no matching live event within ${seconds}s")
                if (want(event)) return event
            }
        }
        // Called on the core's live thread, not the JVM's main thread.
        val live = phone.startLiveSync(object : LiveSyncListener {
            override fun onEvent(event: LiveSyncEvent) {
                events.put(event)
            }
        })
        try {
            waitFor(10) { it is LiveSyncEvent.Connected }
            waitFor(10) { it is LiveSyncEvent.Synced }
            val account = tablet.createAccount("Live Kotlin Café", null)
            val now = System.currentTimeMillis()
            val visit = tablet.planVisit(account, now, now + 60_000)
            val started = System.nanoTime()
            tablet.sync(null)
            waitFor(5) { it is LiveSyncEvent.Synced && it.summary.pulled > 0uL }
            val ms = (System.nanoTime() - started) / 1_000_000
            check(phone.visit(visit).accountId == account) { "the visit reached the phone" }
            println("     (tablet to phone in $ms ms)")
        } finally {
            live.stop()
        }
        waitFor(5) { it is LiveSyncEvent.Stopped }
    }

    println("$passed passed, $failed failed")
    // A failed run leaves its stores in `dir` for a look; a passed one cleans up.
    if (failed > 0) kotlin.system.exitProcess(1)
    dir.toFile().deleteRecursively()
}

/// Orders of an account, as the list a field app shows.
fun FieldsyncClient.orderForAccountCount(account: String): Int = ordersForAccount(account).size
