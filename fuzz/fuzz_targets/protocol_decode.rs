//! Every sync message type decoded from arbitrary bytes; what decodes must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: fieldsync_core::fuzzing::skip_fenced_panics_in_hook(),
    |data: &[u8]| {
        fieldsync_core::fuzzing::check_protocol_decode(data);
    }
);
