// A rep's week through the Kotlin bindings on the JVM, against a live server
// (the Python test_rep_week plays the same week): search from the device's
// indexes, a contact, an ad-hoc visit with its geofence verdict, an order
// priced from the account's price list and one beyond the list's maximum
// discount that the manager rejects and the rep reworks, a report with KPI
// values, a cancelled and an aborted visit, and an edit the server refused
// restored once the office re-plans the visit. The manager's device sees it.
// A colleague's last visit at a customer arrives for reference, read-only.
import org.fieldsync.core.*
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
    val dir = Files.createTempDirectory("fieldsync-kt-week-")
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

    // One device each for the whole week: logins are rate limited per user.
    val rep = client("rep", "rep2@demo.example")
    val manager = client("manager", "manager@demo.example")

    test("a rep's week: search, ad-hoc visit, priced orders, KPIs, cancelled visits") {
        rep.synced()
        check(rep.accountsAt("Lisboa", null).isNotEmpty()) { "the demo's sites are in Lisboa" }
        val shop = rep.createAccount("Kotlin Semana Store", GeoFix(38.7500, -9.1600, null))
        check(rep.searchAccounts("KOTLIN SEM", null).map { it.id } == listOf(shop))
        val products = rep.searchProducts("", null)
        val (oil, coffee) = products[0] to products[1]
        rep.synced()
        manager.synced()
        val list = manager.createPriceList(
            "Kotlin retail",
            "EUR",
            listOf(PriceEntry(oil.id, 450L, 1_000u), PriceEntry(coffee.id, 900L, 500u)),
        )
        manager.setAccountPriceList(shop, list)
        manager.synced()
        rep.synced()
        check(rep.priceFor(shop, coffee.id)?.unitPriceMinor == 900L)

        val buyer = rep.createContact(shop, NewContact("Rui Lopes", "owner", null, null, false))
        val visit = rep.startAdHocVisit(shop, GeoFix(38.7501, -9.1601, 6.0))
        check(visit.status == "in_progress" && !visit.planned && visit.checkInVerdict == "inside") { "$visit" }
        rep.setVisitContact(visit.id, buyer)
        val fair = rep.createOrder(shop, "EUR", visit.id)
        rep.addPricedLine(fair, oil.id, 4.0, 2300u, null, 180L)
        val greedy = rep.createOrder(shop, "EUR", visit.id)
        val line = rep.addPricedLine(greedy, coffee.id, 5.0, 2300u, 1_500u, null)
        check(rep.order(fair).discountMinor == 180L && rep.order(fair).lines[0].unitPriceMinor == 450L)
        rep.submitOrder(fair)
        rep.submitOrder(greedy)
        val report = rep.writeReport(visit.id, "Shelf reset agreed.")
        rep.setKpi(report, KpiItem("facings", 10.0, 7.0, "facings"))
        rep.setReportObservations(report, "Promo end-cap missing.")
        rep.submitReport(report)
        rep.checkOut(visit.id, null, Outcome.ORDER_TAKEN)

        val now = System.currentTimeMillis()
        val later = rep.planVisit(shop, now + 26 * hour, now + 27 * hour)
        check(rep.cancelVisit(later, null).status == "cancelled")
        val onSite = rep.planVisit(shop, now + 3 * hour, now + 4 * hour)
        rep.checkIn(onSite, null)
        expect("Transition") { rep.cancelVisit(onSite, null) }
        check(rep.cancelVisit(onSite, "Owner not there").status == "cancelled")
        rep.synced()
        rep.synced()
        check(rep.order(greedy).status == "pending_approval") { rep.order(greedy).status }

        manager.synced()
        val seen = manager.visit(visit.id)
        check(!seen.planned && seen.contactId == buyer && seen.checkInVerdict == "inside") { "$seen" }
        val kpi = manager.report(report).kpis.single()
        check(kpi.name == "facings" && kpi.target == 10.0 && kpi.actual == 7.0) { "$kpi" }
        check(manager.visit(later).status == "cancelled")
        manager.rejectOrder(greedy, "15 % is over the 5 % allowed")
        manager.synced()
        rep.synced()
        check(rep.order(greedy).status == "rejected")
        check(rep.reworkOrder(greedy).status == "draft")
        rep.setLineDiscount(greedy, line, 500u, null)
        rep.submitOrder(greedy)
        rep.synced()
        rep.synced()
        check(rep.order(greedy).status in setOf("submitted", "confirmed")) { rep.order(greedy).status }
    }

    test("a refused edit is restored once the office re-plans the visit") {
        rep.synced()
        val shop = rep.createAccount("Kotlin Restore Kiosk", null)
        val now = System.currentTimeMillis()
        val visit = rep.planVisit(shop, now + 5 * hour, now + 6 * hour)
        rep.synced()
        manager.synced()
        manager.cancelVisit(visit, null)
        manager.synced()
        rep.setNextVisitDate(visit, "2026-06-01")
        check(rep.sync(null).rejected == 1uL)
        val entry = rep.rejections().single()
        check(entry.recordId == visit && entry.code == "forbidden") { "$entry" }
        expect("Validation") { rep.restoreRejection(entry.seq) }
        manager.replanVisit(visit)
        manager.synced()
        rep.synced()
        check(rep.restoreRejection(entry.seq) == visit)
        check(rep.rejections().isEmpty())
        rep.synced()
        manager.synced()
        check(manager.visit(visit).nextVisitDate == "2026-06-01")
    }

    test("a colleague's last visit at a customer arrives for reference, read-only") {
        val colleague = client("colleague", "rep3@demo.example")
        colleague.synced()
        val deli = colleague.createAccount("Kotlin Reference Deli", null)
        val now = System.currentTimeMillis()
        val earlier = colleague.planVisit(deli, now - 240 * hour, now - 239 * hour)
        colleague.checkIn(earlier, null)
        colleague.checkOut(earlier, null, Outcome.NO_ORDER)
        colleague.synced()
        rep.synced()
        val tomorrow = rep.planVisit(deli, now + 24 * hour, now + 25 * hour)
        rep.synced()
        val seen = rep.visitsForAccount(deli).associateBy { it.id }
        check(seen.keys == setOf(earlier, tomorrow)) { "$seen" }
        check(seen.getValue(earlier).readOnly && !seen.getValue(tomorrow).readOnly)
        check(seen.getValue(earlier).status == "completed")
        expect("ReadOnly") { rep.setVisitNotes(earlier, "not mine to change") }
    }

    println("$passed passed, $failed failed")
    // A failed run leaves its stores in `dir` for a look; a passed one cleans up.
    if (failed > 0) kotlin.system.exitProcess(1)
    dir.toFile().deleteRecursively()
}
