"""A rep's week through the Python bindings against a live server.

Search, contacts, an ad-hoc visit with its geofence verdict, orders priced
from the account's price list (one within the list's maximum discount, one
beyond it that a manager rejects and the rep reworks), ship-to and delivery
date, a report with observations and KPI values, cancelled and aborted
visits, deleting, and an edit the server refused that the rep restores once
the office re-plans the visit. The manager's device sees each result. A
colleague's last visit at a customer arrives for reference, read-only.
(The Kotlin RepWeekTest plays the same week on the JVM.)
"""

import os
import shutil
import tempfile
import time
import unittest

import fieldsync_ffi as fs

URL = os.environ.get("FIELDSYNC_TEST_URL", "")
ORG = os.environ.get("FIELDSYNC_TEST_ORG", "demo")
PASSWORD = os.environ.get("FIELDSYNC_TEST_PASSWORD", "fieldsync-demo")
HOUR = 3_600_000


def client(directory, name, email):
    c = fs.FieldsyncClient.open(os.path.join(directory, name + ".db"), URL)
    c.login(ORG, email, PASSWORD, "python", "test-1.0")
    return c


def synced(test, c):
    s = c.sync(None)
    test.assertEqual(s.rejected, 0, c.rejections())
    return s


@unittest.skipUnless(URL, "needs FIELDSYNC_TEST_URL (run through `cargo xtask test`)")
class RepWeekTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="fieldsync-py-rep-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def test_a_reps_week_of_search_orders_reports_and_housekeeping(self):
        rep = client(self.dir, "rep", "rep3@demo.example")
        manager = client(self.dir, "manager", "manager@demo.example")
        synced(self, rep)
        synced(self, manager)

        # Search from the device's indexes: the demo's accounts are in Lisboa.
        mine = rep.accounts_at("lisboa")
        self.assertTrue(mine, "the demo's sites are in Lisboa")
        first = mine[0]
        self.assertEqual([a.id for a in rep.search_accounts(first.name[:4].upper())][:1], [first.id])
        shop_fix = fs.GeoFix(lat=38.7400, lng=-9.1500, accuracy_m=None)
        shop = rep.create_account("Mercearia Semana", shop_fix)
        self.assertIn(shop, [a.id for a in rep.search_accounts("mercearia sem")])
        products = rep.search_products("")
        self.assertGreaterEqual(len(products), 2)
        oil, coffee = products[0], products[1]
        synced(self, rep)

        # The office prices the account.
        synced(self, manager)
        price_list = manager.create_price_list(
            "Lisbon retail",
            "EUR",
            [
                fs.PriceEntry(product_id=oil.id, unit_price_minor=500, max_discount_bp=1_000),
                fs.PriceEntry(product_id=coffee.id, unit_price_minor=800, max_discount_bp=500),
            ],
        )
        manager.set_account_price_list(shop, price_list)
        synced(self, manager)
        synced(self, rep)
        self.assertEqual(rep.account(shop).price_list_id, price_list)
        self.assertEqual(rep.price_for(shop, oil.id).unit_price_minor, 500)
        self.assertIn(price_list, [p.id for p in rep.price_lists()])

        # Monday, offline: a contact, an ad-hoc visit, two orders, a report.
        buyer = rep.create_contact(
            shop,
            fs.NewContact(name="Ana Costa", role="buyer", phone="+351 900 000 001", email="ana@example.com", marketing_consent=True),
        )
        self.assertEqual([c.id for c in rep.contacts_of(shop)], [buyer])
        with self.assertRaises(fs.FieldsyncError.Validation):
            rep.create_contact(shop, fs.NewContact(name="X", role=None, phone=None, email="not-an-email", marketing_consent=False))
        visit = rep.start_ad_hoc_visit(shop, fs.GeoFix(lat=38.7401, lng=-9.1501, accuracy_m=8.0))
        self.assertEqual((visit.status, visit.planned, visit.check_in_verdict), ("in_progress", False, "inside"))
        rep.set_visit_contact(visit.id, buyer)

        within = rep.create_order(shop, "EUR", visit.id)
        line = rep.add_priced_line(within, oil.id, 2.0, 2_300, discount_amount_minor=100)
        order = rep.order(within)
        self.assertEqual(order.price_list_id, price_list)
        self.assertEqual((order.lines[0].unit_price_minor, order.discount_minor), (500, 100))
        site = rep.account(shop).sites[0].id
        rep.set_order_details(within, site, "2026-03-02", "Back door")
        with self.assertRaises(fs.FieldsyncError.InvalidArgument):
            rep.set_order_details(within, None, "next tuesday", None)
        rep.submit_order(within)

        beyond = rep.create_order(shop, "EUR", visit.id)
        big = rep.add_priced_line(beyond, coffee.id, 10.0, 2_300, discount_bp=2_000)
        rep.submit_order(beyond)

        report = rep.write_report(visit.id, "Agreed the summer range.")
        rep.set_report_observations(report, "Competitor's oil on the eye-level shelf.")
        rep.set_kpi(report, fs.KpiItem(name="facings", target=12.0, actual=9.0, unit="facings"))
        rep.set_kpi(report, fs.KpiItem(name="share_of_shelf", target=30.0, actual=22.5, unit="%"))
        rep.submit_report(report)
        out = rep.check_out(visit.id, fs.GeoFix(lat=38.7401, lng=-9.1501, accuracy_m=8.0), fs.Outcome.ORDER_TAKEN)
        self.assertEqual(out.status, "completed")
        rep.set_next_visit_date(visit.id, "2026-03-09")

        # A planned visit called off, and one aborted on site.
        now = int(time.time() * 1000)
        called_off = rep.plan_visit(shop, now + 24 * HOUR, now + 25 * HOUR)
        self.assertEqual(rep.cancel_visit(called_off, None).status, "cancelled")
        aborted = rep.plan_visit(shop, now + 2 * HOUR, now + 3 * HOUR)
        rep.check_in(aborted, None)
        with self.assertRaises(fs.FieldsyncError.Transition):
            rep.cancel_visit(aborted, None)
        self.assertEqual(rep.cancel_visit(aborted, "Shop closed for a funeral").status, "cancelled")
        # Deleting follows the write rules: a planned visit yes, a completed one no.
        spare = rep.plan_visit(shop, now + 48 * HOUR, now + 49 * HOUR)
        rep.delete_record(spare)
        self.assertNotIn(spare, [v.id for v in rep.visits_for_account(shop)])
        with self.assertRaises(fs.FieldsyncError.Validation):
            rep.delete_record(visit.id)
        synced(self, rep)
        synced(self, rep)

        # The server priced both orders from the list: one taken, one to approve.
        self.assertIn(rep.order(within).status, ("submitted", "confirmed"))
        self.assertEqual(rep.order(beyond).status, "pending_approval")
        self.assertTrue(any("over" in r for r in rep.order_status_reasons(beyond)), rep.order_status_reasons(beyond))

        # The manager sees the week and rejects the big discount.
        synced(self, manager)
        seen = manager.visit(visit.id)
        self.assertEqual((seen.planned, seen.contact_id, seen.next_visit_date), (False, buyer, "2026-03-09"))
        self.assertEqual(seen.check_in_verdict, "inside")
        self.assertEqual(manager.contact(buyer).name, "Ana Costa")
        kpis = {k.name: (k.target, k.actual) for k in manager.report(report).kpis}
        self.assertEqual(kpis, {"facings": (12.0, 9.0), "share_of_shelf": (30.0, 22.5)})
        self.assertEqual(manager.report(report).observations, "Competitor's oil on the eye-level shelf.")
        o = manager.order(within)
        self.assertEqual((o.ship_to, o.delivery_date, o.notes), (site, "2026-03-02", "Back door"))
        self.assertEqual(manager.visit(called_off).status, "cancelled")
        self.assertIn(beyond, [x.id for x in manager.orders_by_status("pending_approval")])
        manager.reject_order(beyond, "20 % is over the coffee's 5 %; offer 5 %.")
        synced(self, manager)

        # The rep reworks the rejected order within the policy.
        synced(self, rep)
        self.assertEqual(rep.order(beyond).status, "rejected")
        self.assertEqual(rep.rework_order(beyond).status, "draft")
        rep.set_line_discount(beyond, big, 500, None)
        rep.submit_order(beyond)
        synced(self, rep)
        synced(self, rep)
        self.assertIn(rep.order(beyond).status, ("submitted", "confirmed"))
        # An order the customer changed their mind about.
        dropped = rep.create_order(shop, "EUR", None)
        rep.add_priced_line(dropped, oil.id, 1.0, 2_300)
        self.assertEqual(rep.cancel_order(dropped, "Customer will order online").status, "cancelled")
        with self.assertRaises(fs.FieldsyncError.Transition):
            rep.rework_order(dropped)
        synced(self, rep)
        synced(self, manager)
        self.assertEqual(manager.order(dropped).status, "cancelled")

    def test_an_edit_refused_by_the_server_is_restored_after_the_office_replans(self):
        rep = client(self.dir, "rep-restore", "rep1@demo.example")
        manager = client(self.dir, "manager-restore", "manager@demo.example")
        synced(self, rep)
        shop = rep.create_account("Restore Test Kiosk", None)
        now = int(time.time() * 1000)
        visit = rep.plan_visit(shop, now + 5 * HOUR, now + 6 * HOUR)
        synced(self, rep)

        # The office cancels the visit while the rep, offline, plans ahead on it.
        synced(self, manager)
        manager.cancel_visit(visit, None)
        synced(self, manager)
        rep.set_next_visit_date(visit, "2026-04-01")
        refused = rep.sync(None)
        self.assertEqual(refused.rejected, 1)
        ledger = rep.rejections()
        self.assertEqual([(r.record_id, r.code) for r in ledger], [(visit, "forbidden")])
        back = rep.visit(visit)
        self.assertEqual((back.status, back.next_visit_date), ("cancelled", None))
        # While the reason holds, a restore is refused and changes nothing.
        with self.assertRaises(fs.FieldsyncError.Validation) as still:
            rep.restore_rejection(ledger[0].seq)
        self.assertIn("cancelled", str(still.exception))
        self.assertEqual(len(rep.rejections()), 1)

        # The office plans it again: the rep restores the edit.
        manager.replan_visit(visit)
        synced(self, manager)
        synced(self, rep)
        self.assertEqual(rep.visit(visit).status, "planned")
        self.assertEqual(rep.restore_rejection(ledger[0].seq), visit)
        self.assertEqual(rep.visit(visit).next_visit_date, "2026-04-01")
        self.assertEqual(rep.rejections(), [])
        synced(self, rep)
        synced(self, manager)
        self.assertEqual(manager.visit(visit).next_visit_date, "2026-04-01")

        # Another refused edit, dismissed: the record stays as the server has it.
        manager.cancel_visit(visit, None)
        synced(self, manager)
        rep.set_next_visit_date(visit, "2026-05-01")
        self.assertEqual(rep.sync(None).rejected, 1)
        rep.dismiss_rejection(rep.rejections()[0].seq)
        self.assertEqual(rep.rejections(), [])
        self.assertEqual(rep.visit(visit).next_visit_date, "2026-04-01")
        with self.assertRaises(fs.FieldsyncError.NotFound):
            rep.restore_rejection(ledger[0].seq)

    def test_a_colleagues_last_visits_at_a_customer_arrive_for_reference(self):
        first = client(self.dir, "rep-before", "rep1@demo.example")
        second = client(self.dir, "rep-after", "rep2@demo.example")
        synced(self, first)
        deli = first.create_account("Reference Test Deli", None)
        now = int(time.time() * 1000)
        # The first rep's visit ten days ago, done; the second's is tomorrow.
        earlier = first.plan_visit(deli, now - 240 * HOUR, now - 239 * HOUR)
        first.check_in(earlier, None)
        first.set_visit_notes(earlier, "Owner wants the Christmas catalogue.")
        first.check_out(earlier, None, fs.Outcome.NO_ORDER)
        synced(self, first)
        synced(self, second)
        tomorrow = second.plan_visit(deli, now + 24 * HOUR, now + 25 * HOUR)
        synced(self, second)

        seen = {v.id: v for v in second.visits_for_account(deli)}
        self.assertEqual(set(seen), {earlier, tomorrow})
        self.assertTrue(seen[earlier].read_only)
        self.assertFalse(seen[tomorrow].read_only)
        self.assertEqual(seen[earlier].status, "completed")
        self.assertEqual(seen[earlier].notes, "Owner wants the Christmas catalogue.")
        with self.assertRaises(fs.FieldsyncError.ReadOnly):
            second.set_visit_notes(earlier, "not mine to change")
        self.assertEqual(second.pending_changes(), 0)
        self.assertEqual(second.jobs_for_account(deli), [])


if __name__ == "__main__":
    unittest.main()
