"""A device revoked on the managers' Devices page is wiped at its next request.

The rep's phone is the real library through the Python bindings; the manager
uses the web pages over HTTP as a browser would (the login form with its CSRF
token, the session cookie, the Devices page's confirmation form).
"""

import http.cookiejar
import os
import re
import shutil
import tempfile
import unittest
import urllib.parse
import urllib.request

import fieldsync_ffi as fs

URL = os.environ.get("FIELDSYNC_TEST_URL", "")
ORG = os.environ.get("FIELDSYNC_TEST_ORG", "demo")
PASSWORD = os.environ.get("FIELDSYNC_TEST_PASSWORD", "fieldsync-demo")


class Browser:
    """Forms and cookies, without JavaScript (the pages need none)."""

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path):
        with self.opener.open(URL + path) as r:
            return r.read().decode()

    def post(self, path, fields):
        data = urllib.parse.urlencode(fields).encode()
        with self.opener.open(urllib.request.Request(URL + path, data=data)) as r:
            return r.read().decode()


def csrf_of(page):
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "a form with a CSRF token"
    return found.group(1)


@unittest.skipUnless(URL, "needs FIELDSYNC_TEST_URL (run through `cargo xtask test`)")
class RevocationTest(unittest.TestCase):
    def test_a_device_revoked_on_the_devices_page_is_wiped_at_its_next_request(self):
        directory = tempfile.mkdtemp(prefix="fieldsync-py-revoke-")
        self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
        phone = fs.FieldsyncClient.open(os.path.join(directory, "phone.db"), URL)
        phone.login(ORG, "rep1@demo.example", PASSWORD, "python", "test-1.0")
        phone.sync(None)
        self.assertTrue(phone.search_accounts("", None), "the phone holds the territory's accounts")
        device = phone.session().device_id

        manager = Browser()
        login = manager.get("/web/login")
        manager.post(
            "/web/login",
            {
                "csrf": csrf_of(login),
                "org": ORG,
                "email": "manager@demo.example",
                "password": PASSWORD,
                "next": "/web/devices",
            },
        )
        devices = manager.get("/web/devices")
        self.assertIn(device, devices, "the manager sees the rep's phone")
        confirm = manager.get("/web/devices/%s/revoke" % device)
        self.assertIn("confirm-revoke", confirm)
        after = manager.post("/web/devices/%s/revoke" % device, {"csrf": csrf_of(confirm)})
        self.assertIn("Revoked", after)

        with self.assertRaises(fs.FieldsyncError.Revoked):
            phone.sync(None)
        self.assertEqual(phone.search_accounts("", None), [], "the phone's data is gone")


if __name__ == "__main__":
    unittest.main()
