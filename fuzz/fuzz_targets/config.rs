//! Config loading: any TOML text gives a Config or an error that names the problem, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = parlor_config::Config::from_toml(text) {
        assert!(!e.to_string().is_empty());
    }
});
