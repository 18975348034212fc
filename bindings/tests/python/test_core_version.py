"""Python bindings, loaded from the generated module and the real native library."""

import re
import unittest

import fieldsync_ffi


class CoreVersionTest(unittest.TestCase):
    def test_the_native_library_reports_the_core_version(self):
        self.assertRegex(fieldsync_ffi.core_version(), re.compile(r"^\d+\.\d+\.\d+$"))


if __name__ == "__main__":
    unittest.main()
