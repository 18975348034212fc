//! A stored record document loaded from arbitrary bytes and read every way.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: fieldsync_core::fuzzing::skip_fenced_panics_in_hook(),
    |data: &[u8]| {
        fieldsync_core::fuzzing::check_doc_load(data);
    }
);
