"""A technician's week through the Python bindings against a live server.

Every screen a technician uses beyond the happy path of one day: the job
read and listed on the device (and put in progress by the model's roll-up
when the technician sets off), a checklist of every question kind answered
one question at a time with a show-if branch and its required questions
checked before completing, a running time entry stopped with a note, a
serialized part that is not billed, and the job completed with its
resolution. The manager's device sees each result after a sync.

Then the van: the office fills the technician's van through the JSON API,
the technician takes a serialized part from it (the balance goes down and
the serial leaves the van) and a part the van does not hold (recorded all
the same, the balance negative for the office); and a timer stopped on the
phone and on the tablet offline, whose clashing end the technician settles
from the app.
"""

import json
import os
import shutil
import tempfile
import time
import unittest
import urllib.request

import fieldsync_ffi as fs

URL = os.environ.get("FIELDSYNC_TEST_URL", "")
ORG = os.environ.get("FIELDSYNC_TEST_ORG", "demo")
PASSWORD = os.environ.get("FIELDSYNC_TEST_PASSWORD", "fieldsync-demo")


def client(directory, name, email):
    c = fs.FieldsyncClient.open(os.path.join(directory, name + ".db"), URL)
    c.login(ORG, email, PASSWORD, "python", "test-1.0")
    return c


def office_api(manager, method, path, body=None):
    """A call to the server's JSON API with the manager's token."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method)
    req.add_header("Authorization", "Bearer " + manager.tokens().access_token)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def question(key, position, text, kind, required=True, choices=(), show_if=None):
    return fs.QuestionItem(
        key=key,
        position=position,
        text=text,
        kind=kind,
        choices=list(choices),
        required=required,
        show_if_question=show_if[0] if show_if else None,
        show_if_equals=show_if[1] if show_if else None,
    )


K = fs.QuestionKindItem
V = fs.AnswerValueItem

EVERY_KIND = [
    question("leak", 1, "Any leak?", K.YES_NO),
    question("leak_photo", 2, "Photo of the leak", K.PHOTO, show_if=("leak", "yes")),
    question("cause", 3, "Cause", K.CHOICE, choices=["seal", "hose", "pump"]),
    question("pressure", 4, "Pressure (bar)", K.NUMBER),
    question("remarks", 5, "Remarks", K.TEXT, required=False),
    question("serial", 6, "Scan the machine's serial", K.BARCODE),
    question("signed", 7, "Customer's signature", K.SIGNATURE),
]


@unittest.skipUnless(URL, "needs FIELDSYNC_TEST_URL (run through `cargo xtask test`)")
class TechnicianWeekTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="fieldsync-py-week-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def test_a_technicians_week_of_jobs_checklists_time_and_parts(self):
        manager = client(self.dir, "manager", "manager@demo.example")
        manager.sync(None)
        tech = client(self.dir, "tech", "tech2@demo.example")
        site = manager.create_account("Week Test Laundromat", fs.GeoFix(lat=38.7300, lng=-9.1400, accuracy_m=None))
        job = manager.create_job(site, "Washer 3 leaks under the drum.")
        template = manager.publish_checklist("Washer service", 2, EVERY_KIND)
        now = int(time.time() * 1000)
        assignment = manager.assign_job(job, tech.session().user_id, now, now + 4 * 3_600_000)
        self.assertEqual(manager.job(job).status, "scheduled", "an open job with an assignment is scheduled")
        self.assertEqual(manager.sync(None).rejected, 0, manager.rejections())

        tech.sync(None)
        # The job screen: read and listed on the technician's device.
        seen = tech.job(job)
        self.assertEqual((seen.description, seen.status), ("Washer 3 leaks under the drum.", "scheduled"))
        self.assertIn(job, [j.id for j in tech.jobs()])
        self.assertEqual([q.key for q in tech.checklist_template(template).questions][:3], ["leak", "leak_photo", "cause"])

        # Offline from here. Setting off puts the job in progress.
        tech.advance_assignment(assignment, fs.AssignmentStep.ACCEPT, None, None)
        drive = tech.start_time(assignment, fs.TimeKindItem.TRAVEL)
        running = [t for t in tech.assignment(assignment).time if t.id == drive][0]
        self.assertIsNone(running.end_ms)
        tech.advance_assignment(assignment, fs.AssignmentStep.TRAVEL, None, None)
        self.assertEqual(tech.job(job).status, "in_progress")
        here = fs.GeoFix(lat=38.7301, lng=-9.1401, accuracy_m=7.0)
        tech.advance_assignment(assignment, fs.AssignmentStep.ON_SITE, here, None)
        stopped = tech.stop_time(assignment, drive, note="Roadworks on the Avenida")
        entry = [t for t in stopped.time if t.id == drive][0]
        self.assertIsNotNone(entry.end_ms)
        self.assertEqual((entry.note, entry.approval), ("Roadworks on the Avenida", "pending"))
        with self.assertRaises(fs.FieldsyncError.Transition):
            tech.stop_time(assignment, drive)
        tech.advance_assignment(assignment, fs.AssignmentStep.START_WORK, here, None)

        # The checklist, one question at a time.
        form = tech.start_checklist(template, assignment)
        self.assertEqual(form.template_version, 2, "the template's own version")
        self.assertNotIn("leak_photo", form.shown_questions)
        form = tech.answer_question(form.id, "leak", V.YES_NO(value=True))
        self.assertIn("leak_photo", form.shown_questions, "show-if: a leak asks for its photo")
        self.assertEqual(form.missing_required, ["leak_photo", "cause", "pressure", "serial", "signed"])
        with self.assertRaises(fs.FieldsyncError.Validation):
            tech.answer_question(form.id, "cause", V.CHOICE(value="gremlins"))
        with self.assertRaises(fs.FieldsyncError.Validation):
            tech.answer_question(form.id, "pressure", V.TEXT(value="high"))
        with self.assertRaises(fs.FieldsyncError.Validation) as open_questions:
            tech.complete_checklist(form.id)
        self.assertIn("leak_photo", str(open_questions.exception))
        photo = tech.attach_photo(assignment, b"\xff\xd8leak" + os.urandom(2_000), "image/jpeg", gps=here)
        drawn = os.path.join(self.dir, "customer.png")
        with open(drawn, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + os.urandom(1_000))
        signature = tech.attach_file(assignment, drawn, "signature", "image/png")
        for key, value in [
            ("leak_photo", V.PHOTO(sha256=photo)),
            ("cause", V.CHOICE(value="seal")),
            ("pressure", V.NUMBER(value=2.5)),
            ("remarks", V.TEXT(value="Drum bearing sounds worn; quote sent.")),
            ("serial", V.BARCODE(value="WX-3-0042871")),
            ("signed", V.SIGNATURE(sha256=signature)),
        ]:
            form = tech.answer_question(form.id, key, value)
        self.assertEqual(form.missing_required, [])
        done = tech.complete_checklist(form.id)
        self.assertTrue(done.completed)
        self.assertTrue(tech.assignment(assignment).checklist_complete)

        # A serialized part from the van, not billed (under warranty).
        seal = [p for p in tech.search_products("PMP")][0]
        tech.add_part(assignment, seal.id, 1.0, serial="PS-2231-A", billable=False)
        tech.set_job_resolution(job, "Replaced the pump seal.", True)
        tech.advance_assignment(assignment, fs.AssignmentStep.COMPLETE, here, None)
        closed = tech.complete_job(job, "Replaced the pump seal; drum bearing to watch.", True)
        self.assertEqual(closed.status, "completed")
        self.assertIsNotNone(closed.completed_at_ms)

        pushed = tech.sync(None)
        self.assertEqual(pushed.rejected, 0, tech.rejections())
        self.assertEqual(tech.pending_changes(), 0)

        # The manager's device sees all of it.
        manager.sync(None)
        job_seen = manager.job(job)
        self.assertEqual(job_seen.status, "completed")
        self.assertEqual(job_seen.resolution, "Replaced the pump seal; drum bearing to watch.")
        self.assertTrue(job_seen.first_time_fix)
        a = manager.assignment(assignment)
        self.assertEqual(a.status, "completed")
        self.assertEqual([(p.serial, p.billable) for p in a.parts], [("PS-2231-A", False)])
        self.assertEqual([t.note for t in a.time], ["Roadworks on the Avenida"])
        forms = manager.checklists_of(assignment)
        self.assertEqual([f.id for f in forms], [form.id])
        answers = {g.question: g.value for g in forms[0].answers}
        self.assertEqual(answers["cause"], V.CHOICE(value="seal"))
        self.assertEqual(answers["pressure"], V.NUMBER(value=2.5))
        self.assertEqual(answers["serial"], V.BARCODE(value="WX-3-0042871"))
        self.assertEqual(answers["leak_photo"], V.PHOTO(sha256=photo))
        self.assertTrue(forms[0].completed)

    def test_a_part_from_the_van_and_a_timer_settled_between_two_devices(self):
        manager = client(self.dir, "manager-van", "manager@demo.example")
        manager.sync(None)
        phone = client(self.dir, "phone", "tech2@demo.example")
        tablet = client(self.dir, "tablet", "tech2@demo.example")
        tech_id = phone.session().user_id
        sku = "VAL-" + os.urandom(3).hex()
        valve = manager.create_product(sku, "Drain valve", "pcs", True, True)
        with self.assertRaises(fs.FieldsyncError.Transition):
            phone.create_product("NOPE-1", "Not mine to add", "pcs", False, True)
        site = manager.create_account("Week Test Car Wash", None)
        job = manager.create_job(site, "Drain valve stuck")
        now = int(time.time() * 1000)
        assignment = manager.assign_job(job, tech_id, now, now + 2 * 3_600_000)
        self.assertEqual(manager.sync(None).rejected, 0, manager.rejections())
        filled = office_api(
            manager,
            "POST",
            "/v1/technicians/%s/van/replenish" % tech_id,
            {"product_id": valve, "qty": "2", "serials": ["DV-1", "DV-2"], "note": "delivery 42"},
        )
        before = [b for b in filled["balances"] if b["product_id"] == valve][0]
        self.assertEqual((before["qty"], before["serials"]), ("2.0000", ["DV-1", "DV-2"]))

        phone.sync(None)
        van = phone.van_stock()
        self.assertIsNotNone(van, "the office's van reached the technician")
        self.assertEqual([(b.sku, b.quantity, b.serials) for b in van.balances], [(sku, 2.0, ["DV-1", "DV-2"])])
        for step in [fs.AssignmentStep.ACCEPT, fs.AssignmentStep.ON_SITE, fs.AssignmentStep.START_WORK]:
            phone.advance_assignment(assignment, step, None, None)
        part = phone.add_part(assignment, valve, 1.0, serial="DV-2", van_stock_id=van.id)
        self.assertEqual([p.van_stock_id for p in phone.assignment(assignment).parts if p.id == part], [van.id])
        kit = phone.search_products("PMP")[0]
        phone.add_part(assignment, kit.id, 1.0, van_stock_id=van.id)
        balances = {b.product_id: b for b in phone.van_stock().balances}
        self.assertEqual((balances[valve].quantity, balances[valve].serials), (1.0, ["DV-1"]))
        self.assertEqual(balances[kit.id].quantity, -1.0, "an empty van never blocks the job")

        # A timer stopped on both devices offline.
        timer = phone.start_time(assignment, fs.TimeKindItem.WORK)
        self.assertEqual(phone.sync(None).rejected, 0, phone.rejections())
        tablet.sync(None)
        phone.stop_time(assignment, timer)
        time.sleep(0.01)
        tablet.stop_time(assignment, timer)
        self.assertEqual(phone.sync(None).rejected, 0, phone.rejections())
        self.assertEqual(tablet.sync(None).rejected, 0, tablet.rejections())
        phone.sync(None)
        clash = [c for c in phone.conflicts(assignment) if c.field == "time_entries.%s.end" % timer]
        self.assertEqual(len(clash), 1, phone.conflicts(assignment))
        self.assertEqual(len(clash[0].values), 2)
        with self.assertRaises(fs.FieldsyncError.Validation):
            phone.resolve_conflict(assignment, clash[0].field, '"not one of them"')
        left = phone.resolve_conflict(assignment, clash[0].field, clash[0].values[-1])
        self.assertEqual(left, [])
        self.assertEqual(phone.sync(None).rejected, 0, phone.rejections())

        # The office sees the van gone down and the settled timer.
        manager.sync(None)
        self.assertEqual(manager.conflicts(assignment), [])
        self.assertEqual(len(manager.assignment(assignment).parts), 2)
        van_now = office_api(manager, "GET", "/v1/technicians/%s/van" % tech_id)
        rows = {b["product_id"]: b for b in van_now["balances"]}
        self.assertEqual((rows[valve]["qty"], rows[valve]["serials"]), ("1.0000", ["DV-1"]))
        self.assertTrue(rows[kit.id]["qty"].startswith("-"), van_now)

    def test_a_checklist_answered_at_once_takes_the_templates_version_and_its_required_questions(self):
        manager = client(self.dir, "manager-once", "manager@demo.example")
        manager.sync(None)
        tech = client(self.dir, "tech-once", "tech1@demo.example")
        site = manager.create_account("Week Test Dairy", None)
        job = manager.create_job(site, "Cooling unit alarm")
        template = manager.publish_checklist("Cooling", 3, EVERY_KIND[:4])
        now = int(time.time() * 1000)
        assignment = manager.assign_job(job, tech.session().user_id, now, now + 3_600_000)
        manager.sync(None)
        tech.sync(None)
        with self.assertRaises(fs.FieldsyncError.Validation):
            tech.answer_checklist(template, assignment, [fs.AnswerItem(question="leak", yes_no=True, number=None, text=None)])
        self.assertFalse(tech.assignment(assignment).checklist_complete)
        made = tech.answer_checklist(
            template,
            assignment,
            [
                fs.AnswerItem(question="leak", yes_no=False, number=None, text=None),
                fs.AnswerItem(question="cause", yes_no=None, number=None, text="hose"),
                fs.AnswerItem(question="pressure", yes_no=None, number=1.5, text=None),
            ],
        )
        form = tech.checklist(made)
        self.assertEqual(form.template_version, 3)
        self.assertNotIn("leak_photo", form.shown_questions)
        self.assertEqual({g.question: g.value for g in form.answers}["cause"], V.CHOICE(value="hose"))
        self.assertEqual(tech.sync(None).rejected, 0, tech.rejections())


if __name__ == "__main__":
    unittest.main()
