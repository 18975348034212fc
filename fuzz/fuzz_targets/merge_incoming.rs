//! The server's merge path for pushed Automerge changes (input layout:
//! `fieldsync_core::fuzzing::merge_input`); an accepted merge must save and load.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: fieldsync_core::fuzzing::skip_fenced_panics_in_hook(),
    |data: &[u8]| {
        fieldsync_core::fuzzing::check_merge_incoming(data);
    }
);
