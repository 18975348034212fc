"""A technician's day through the Python bindings against a live server.

`cargo xtask test` starts `fieldsync serve` seeded with `fieldsync demo` and
passes its address and the demo password in FIELDSYNC_TEST_* variables. A
manager's client opens a job and assigns it; the technician's client accepts
it, travels, arrives, works, books a part and time, answers the checklist and
completes; the manager's client then sees all of it. A signed job summary:
the customer's signature from a file, a photo with its capture time and GPS,
the Wi-Fi policy, the refused ledger, and the signature no longer matching
after the office books another part.
"""

import os
import queue
import shutil
import tempfile
import time
import unittest

import fieldsync_ffi as fs

URL = os.environ.get("FIELDSYNC_TEST_URL", "")
ORG = os.environ.get("FIELDSYNC_TEST_ORG", "demo")
PASSWORD = os.environ.get("FIELDSYNC_TEST_PASSWORD", "fieldsync-demo")


class Progress(fs.SyncListener):
    """Collects what the sync reports."""

    def __init__(self):
        self.events = []

    def on_progress(self, stage, done):
        self.events.append((stage, done))


def client(directory, name, email):
    c = fs.FieldsyncClient.open(os.path.join(directory, name + ".db"), URL)
    c.login(ORG, email, PASSWORD, "python", "test-1.0")
    return c


class LiveEvents(fs.LiveSyncListener):
    """Collects what live sync reports, from its own thread."""

    def __init__(self):
        self.events = queue.Queue()

    def on_event(self, event):
        self.events.put(event)

    def wait_for(self, want, seconds=10.0):
        deadline = time.monotonic() + seconds
        seen = []
        while time.monotonic() < deadline:
            try:
                event = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if want(event):
                return event
            seen.append(event)
        raise AssertionError(f"no matching live event in {seconds}s; saw {seen}")


@unittest.skipUnless(URL, "needs FIELDSYNC_TEST_URL (run through `cargo xtask test`)")
class TechnicianDayTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="fieldsync-py-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def test_a_technicians_day_reaches_the_manager(self):
        manager = client(self.dir, "manager", "manager@demo.example")
        manager.sync(None)
        tech = client(self.dir, "tech", "tech1@demo.example")
        tech_id = tech.session().user_id

        site = manager.create_account("Python Test Laundry", fs.GeoFix(lat=38.7250, lng=-9.1500, accuracy_m=None))
        job = manager.create_job(site, "Washer leaking; replace the pump seal.")
        template = manager.create_checklist_template("Safety", ["Power isolated?", "Area left clean?"])
        now = int(time.time() * 1000)
        assignment = manager.assign_job(job, tech_id, now, now + 2 * 3_600_000)
        self.assertEqual(manager.sync(None).rejected, 0)

        progress = Progress()
        summary = tech.sync(progress)
        self.assertGreater(summary.primed, 0)
        self.assertTrue(any(stage == fs.SyncStage.PRIMING for stage, _ in progress.events))
        dispatched = [a.id for a in tech.assignments_by_status("dispatched")]
        self.assertIn(assignment, dispatched)

        # The rest happens offline.
        on_site = fs.GeoFix(lat=38.7251, lng=-9.1501, accuracy_m=9.0)
        tech.advance_assignment(assignment, fs.AssignmentStep.ACCEPT, None, None)
        tech.advance_assignment(assignment, fs.AssignmentStep.TRAVEL, None, None)
        tech.advance_assignment(assignment, fs.AssignmentStep.ON_SITE, on_site, None)
        tech.advance_assignment(assignment, fs.AssignmentStep.START_WORK, on_site, None)
        spare = [p for p in tech.catalogue() if p.spare_part][0]
        tech.add_part(assignment, spare.id, 1.0)
        tech.add_time(assignment, fs.TimeKindItem.WORK, now, now + 45 * 60_000)
        tech.answer_checklist(
            template,
            assignment,
            [
                fs.AnswerItem(question="q1", yes_no=True, number=None, text=None),
                fs.AnswerItem(question="q2", yes_no=True, number=None, text=None),
            ],
        )
        done = tech.advance_assignment(assignment, fs.AssignmentStep.COMPLETE, on_site, None)
        self.assertEqual(done.status, "completed")
        self.assertGreater(tech.pending_changes(), 0)

        pushed = tech.sync(None)
        self.assertEqual(pushed.rejected, 0, tech.rejections())
        # An ordinary phone: nothing carried over, the server not restored.
        self.assertEqual((pushed.carried_over, pushed.server_restored), (0, False))
        self.assertEqual(tech.pending_changes(), 0)

        manager.sync(None)
        seen = manager.assignment(assignment)
        self.assertEqual(seen.status, "completed")
        self.assertEqual([p.product_id for p in seen.parts], [spare.id])
        self.assertEqual([t.kind for t in seen.time], ["work"])
        self.assertTrue(seen.checklist_complete)

    def test_a_signed_job_summary_and_its_attachments(self):
        manager = client(self.dir, "manager-sig", "manager@demo.example")
        manager.sync(None)
        tech = client(self.dir, "tech-sig", "tech1@demo.example")
        site = manager.create_account("Signature Test Bakery", None)
        job = manager.create_job(site, "Oven thermostat")
        now = int(time.time() * 1000)
        assignment = manager.assign_job(job, tech.session().user_id, now, now + 2 * 3_600_000)
        manager.sync(None)
        tech.sync(None)

        spare = [p for p in tech.catalogue() if p.spare_part][0]
        tech.add_part(assignment, spare.id, 1.0)
        tech.add_time(assignment, fs.TimeKindItem.WORK, now, now + 30 * 60_000)
        self.assertEqual(tech.job_signature(assignment).state, fs.SignatureState.UNSIGNED)

        # The customer signs on the tablet; the drawn image comes as a file.
        drawn = os.path.join(self.dir, "signature.png")
        with open(drawn, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n" + os.urandom(4_000))
        here = fs.GeoFix(lat=38.7251, lng=-9.1501, accuracy_m=6.0)
        signed = tech.sign_job_from_file(assignment, "Rosa Lima", drawn, "image/png", signer_role="owner", gps=here)
        self.assertEqual(signed.state, fs.SignatureState.MATCHES)
        self.assertEqual(signed.signer_name, "Rosa Lima")

        # A 3 MiB photo with its capture time and position.
        taken = now - 60_000
        photo = tech.attach_photo(
            assignment, b"\xff\xd8" + os.urandom(3 * 1024 * 1024), "image/jpeg", captured_at_ms=taken, gps=here
        )
        kept = {a.sha256: a for a in tech.attachments_of(assignment)}
        self.assertEqual(set(kept), {photo, signed.image_sha256})
        self.assertEqual(kept[photo].captured_at_ms, taken)
        self.assertEqual(kept[photo].gps.accuracy_m, 6.0)

        # On a metered network the large photo waits; the signature goes.
        tech.set_upload_large_attachments(False)
        self.assertFalse(tech.uploads_large_attachments())
        metered = tech.sync(None)
        self.assertEqual(metered.rejected, 0, tech.rejections())
        self.assertEqual((metered.attachments_uploaded, metered.attachments_pending), (1, 1))
        self.assertEqual([a.sha256 for a in tech.pending_attachments()], [photo])
        tech.set_upload_large_attachments(True)
        self.assertEqual(tech.sync(None).attachments_uploaded, 1)
        self.assertEqual(tech.pending_attachments(), [])

        # A file the server does not take goes to the refused ledger, once.
        notes = os.path.join(self.dir, "notes.txt")
        with open(notes, "wb") as f:
            f.write(b"not a document type the server takes")
        refused = tech.attach_file(assignment, notes, "document", "text/plain")
        self.assertEqual(tech.sync(None).attachments_refused, 1)
        ledger = tech.refused_attachments()
        self.assertEqual([(r.attachment.sha256, r.code) for r in ledger], [(refused, "bad_request")])
        self.assertIn("text/plain", ledger[0].message)
        self.assertEqual(tech.sync(None).attachments_refused, 0)

        # The office books another part: the customer did not sign that.
        manager.sync(None)
        self.assertEqual(manager.job_signature(assignment).state, fs.SignatureState.MATCHES)
        manager.add_part(assignment, spare.id, 2.0)
        self.assertEqual(manager.sync(None).rejected, 0, manager.rejections())
        tech.sync(None)
        after = tech.job_signature(assignment)
        self.assertEqual(after.state, fs.SignatureState.NO_LONGER_MATCHES)
        self.assertEqual(after.signed_sha256, signed.signed_sha256)
        self.assertNotEqual(after.current_sha256, after.signed_sha256)

    def test_errors_reach_python_as_one_exception_type(self):
        c = fs.FieldsyncClient.open(os.path.join(self.dir, "x.db"), URL)
        with self.assertRaises(fs.FieldsyncError.Auth):
            c.login(ORG, "tech2@demo.example", "not the password", "python", "test-1.0")
        with self.assertRaises(fs.FieldsyncError.NotLoggedIn):
            c.create_account("nobody's", None)

        manager = client(self.dir, "manager2", "manager@demo.example")
        tech = client(self.dir, "tech2", "tech2@demo.example")
        site = manager.create_account("Error Test Site", None)
        job = manager.create_job(site, "Check the boiler")
        now = int(time.time() * 1000)
        assignment = manager.assign_job(job, tech.session().user_id, now, now + 3_600_000)
        manager.sync(None)
        tech.sync(None)
        # Completing work that was never accepted or started is not a transition.
        with self.assertRaises(fs.FieldsyncError.Transition) as caught:
            tech.advance_assignment(assignment, fs.AssignmentStep.COMPLETE, None, None)
        self.assertIn("dispatched", str(caught.exception))
        with self.assertRaises(fs.FieldsyncError.InvalidArgument):
            tech.assignment("not-an-id")
        with self.assertRaises(fs.FieldsyncError.NotFound):
            tech.assignment("0190a000-0000-7000-8000-000000000000")
        # Nothing half-done was queued by the refused action.
        self.assertEqual(tech.pending_changes(), 0)


@unittest.skipUnless(URL, "needs FIELDSYNC_TEST_URL (run through `cargo xtask test`)")
class LiveSyncTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="fieldsync-py-live-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)

    def test_a_job_assigned_in_the_office_reaches_the_online_technician(self):
        manager = client(self.dir, "manager", "manager@demo.example")
        manager.sync(None)
        tech = client(self.dir, "tech", "tech2@demo.example")
        tech.sync(None)
        events = LiveEvents()
        handle = tech.start_live_sync(events)
        try:
            events.wait_for(lambda e: isinstance(e, fs.LiveSyncEvent.CONNECTED))
            events.wait_for(lambda e: isinstance(e, fs.LiveSyncEvent.SYNCED))

            site = manager.create_account("Live Test Bakery", fs.GeoFix(lat=38.71, lng=-9.14, accuracy_m=None))
            job = manager.create_job(site, "Oven door seal")
            now = int(time.time() * 1000)
            started = time.monotonic()
            assignment = manager.assign_job(job, tech.session().user_id, now, now + 3_600_000)
            self.assertEqual(manager.sync(None).rejected, 0)

            synced = events.wait_for(
                lambda e: isinstance(e, fs.LiveSyncEvent.SYNCED) and e.summary.pulled > 0, 5.0
            )
            self.assertLess(time.monotonic() - started, 5.0)
            self.assertGreater(synced.summary.pulled, 0)
            self.assertIn(assignment, [a.id for a in tech.assignments_by_status("dispatched")])
        finally:
            handle.stop()
        events.wait_for(lambda e: isinstance(e, fs.LiveSyncEvent.STOPPED), 5.0)
        deadline = time.monotonic() + 5.0
        while handle.is_running() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(handle.is_running(), "the live thread ends after stop()")


class EncryptedStoreTest(unittest.TestCase):
    """Encryption at rest; needs no server."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.path = os.path.join(self._tmp.name, "secret.db")

    def tearDown(self):
        self._tmp.cleanup()

    def test_an_encrypted_store_opens_only_with_its_key(self):
        offline = "http://127.0.0.1:9"
        key = os.urandom(32)
        c = fs.FieldsyncClient.open(self.path, offline, key)
        self.assertEqual(c.pending_changes(), 0)
        del c
        with open(self.path, "rb") as f:
            self.assertNotEqual(f.read(16), b"SQLite format 3\x00")
        with self.assertRaises(fs.FieldsyncError.Encryption):
            fs.FieldsyncClient.open(self.path, offline, os.urandom(32))
        with self.assertRaises(fs.FieldsyncError.Encryption):
            fs.FieldsyncClient.open(self.path, offline)
        with self.assertRaises(fs.FieldsyncError.InvalidArgument):
            fs.FieldsyncClient.open(self.path, offline, key[:16])
        self.assertEqual(fs.FieldsyncClient.open(self.path, offline, key).pending_changes(), 0)


if __name__ == "__main__":
    unittest.main()
