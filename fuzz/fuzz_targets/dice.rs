//! Dice notation: any text is parsed or refused with an error, never a panic; a parsed
//! roll stays within its limits.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use parlor_games::{
    dice::{DiceLimits, Notation},
    fair::Draw,
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = DiceLimits::default();
    let Ok(notation) = Notation::parse(text, &limits) else {
        return;
    };
    let vars = BTreeMap::from([("str".to_owned(), 3), ("big".to_owned(), i64::MAX)]);
    let mut draw = Draw::new(&[7; 32], 0);
    if let Ok((_, terms)) = notation.roll(&vars, &limits, &mut draw) {
        assert!(terms.len() <= 1 + text.len());
    }
});
