//! Dice notation, parsed and rolled by our own code: the registry's parsers either lack
//! per-die detail or carry GPL/LGPL licences.
//!
//! ```text
//! roll     := term (("+" | "-") term)*
//! term     := dice | number | "@" name
//! dice     := [number] ("d" | "D") (number | "%") modifier*
//! modifier := ("kh" | "kl" | "dh" | "dl") [number]   keep/drop highest/lowest (default 1)
//!           | "!"                                     explode: a maximum adds a die
//!           | "r" number                              reroll a die showing that value
//! ```
//! Spaces between tokens are allowed. A group has at most one keep or drop. Rerolls
//! repeat until the die shows another value; they apply to every die of the group, the
//! dice that explosions add included, and keep or drop applies last, to them all.

use std::collections::BTreeMap;

use parlor_core::CoreError;
use parlor_protocol::{v1, ErrorCode};

use crate::fair::Draw;

/// Caps on what one roll may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiceLimits {
    /// Dice in one roll: written, rerolled and added by explosions.
    pub max_dice: u32,
    /// Sides of one die.
    pub max_sides: u32,
    /// Explosions that one die may set off.
    pub max_explode: u32,
}

impl Default for DiceLimits {
    fn default() -> Self {
        Self {
            max_dice: 100,
            max_sides: 1000,
            max_explode: 20,
        }
    }
}

/// The longest notation accepted.
pub const MAX_NOTATION: usize = 200;

/// Keep or drop some of a group's dice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    /// Keep the n highest.
    KeepHighest(u32),
    /// Keep the n lowest.
    KeepLowest(u32),
    /// Drop the n highest.
    DropHighest(u32),
    /// Drop the n lowest.
    DropLowest(u32),
}

/// `NdM` and its modifiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Dice written.
    pub count: u32,
    /// Sides of each.
    pub sides: u32,
    /// Keep or drop.
    pub select: Option<Select>,
    /// Exploding.
    pub explode: bool,
    /// Values that are rerolled.
    pub reroll: Vec<u32>,
    /// The modifiers as written, normalised ("kh1!r1").
    pub modifiers: String,
}

/// One term of a roll.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// A dice group.
    Dice(Group),
    /// A number.
    Constant(i64),
    /// `@name`: the roller's value.
    Variable(String),
}

/// A parsed roll: terms, each added or taken away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notation {
    /// (negative, term), in order.
    pub terms: Vec<(bool, Term)>,
}

fn bad(at: usize, what: impl std::fmt::Display) -> CoreError {
    CoreError::new(
        ErrorCode::InvalidArgument,
        format!("bad dice notation at {at}: {what}"),
    )
}

struct Parser<'a> {
    s: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn skip_spaces(&mut self) {
        while self.s.get(self.at) == Some(&b' ') {
            self.at += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek().is_some_and(|p| p.eq_ignore_ascii_case(&c)) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    /// A decimal number, if one starts here; at most 9 digits, so every value fits.
    fn number(&mut self) -> Result<Option<u32>, CoreError> {
        let start = self.at;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.at += 1;
        }
        if self.at == start {
            return Ok(None);
        }
        if self.at - start > 9 {
            return Err(bad(start, "number too large"));
        }
        let text = std::str::from_utf8(&self.s[start..self.at]).unwrap_or("0");
        Ok(Some(text.parse().unwrap_or(0)))
    }

    fn term(&mut self, limits: &DiceLimits) -> Result<Term, CoreError> {
        self.skip_spaces();
        let start = self.at;
        if self.eat(b'@') {
            let name_at = self.at;
            while self
                .peek()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
            {
                self.at += 1;
            }
            if self.at == name_at {
                return Err(bad(name_at, "expected a variable name after @"));
            }
            let name = String::from_utf8_lossy(&self.s[name_at..self.at]).to_ascii_lowercase();
            return Ok(Term::Variable(name));
        }
        let count = self.number()?;
        if !self.eat(b'd') {
            return match count {
                Some(n) => Ok(Term::Constant(i64::from(n))),
                None if self.peek().is_none() => Err(bad(start, "expected a term")),
                None => Err(bad(
                    start,
                    format!("unexpected '{}'", char::from(self.s[start])),
                )),
            };
        }
        let count = count.unwrap_or(1);
        if count == 0 {
            return Err(bad(start, "a group needs at least one die"));
        }
        if count > limits.max_dice {
            return Err(bad(start, format!("more than {} dice", limits.max_dice)));
        }
        let sides_at = self.at;
        let sides = if self.eat(b'%') {
            100
        } else {
            self.number()?
                .ok_or_else(|| bad(sides_at, "expected a number of sides"))?
        };
        if sides < 1 {
            return Err(bad(sides_at, "a die needs at least one side"));
        }
        if sides > limits.max_sides {
            return Err(bad(
                sides_at,
                format!("more than {} sides", limits.max_sides),
            ));
        }
        let mut group = Group {
            count,
            sides,
            select: None,
            explode: false,
            reroll: Vec::new(),
            modifiers: String::new(),
        };
        loop {
            let at = self.at;
            let select = match (
                self.peek().map(|c| c.to_ascii_lowercase()),
                self.s.get(at + 1),
            ) {
                (Some(b'k'), Some(b'h' | b'H')) => Some(Select::KeepHighest as fn(u32) -> Select),
                (Some(b'k'), Some(b'l' | b'L')) => Some(Select::KeepLowest as fn(u32) -> Select),
                (Some(b'd'), Some(b'h' | b'H')) => Some(Select::DropHighest as fn(u32) -> Select),
                (Some(b'd'), Some(b'l' | b'L')) => Some(Select::DropLowest as fn(u32) -> Select),
                _ => None,
            };
            if let Some(make) = select {
                if group.select.is_some() {
                    return Err(bad(at, "a group may keep or drop only once"));
                }
                let tag = String::from_utf8_lossy(&self.s[at..at + 2]).to_ascii_lowercase();
                self.at += 2;
                let n = self.number()?.unwrap_or(1);
                if n > count {
                    return Err(bad(at, format!("cannot keep or drop {n} of {count} dice")));
                }
                group.select = Some(make(n));
                group.modifiers.push_str(&format!("{tag}{n}"));
            } else if self.eat(b'!') {
                if group.explode {
                    return Err(bad(at, "a group explodes only once"));
                }
                group.explode = true;
                group.modifiers.push('!');
            } else if self.peek().is_some_and(|c| c.eq_ignore_ascii_case(&b'r')) {
                self.at += 1;
                let n = self
                    .number()?
                    .ok_or_else(|| bad(self.at, "expected the value to reroll after r"))?;
                if n < 1 || n > sides {
                    return Err(bad(at, format!("a d{sides} never shows {n}")));
                }
                if !group.reroll.contains(&n) {
                    group.reroll.push(n);
                }
                group.modifiers.push_str(&format!("r{n}"));
            } else {
                break;
            }
        }
        let faces = (1..=sides).filter(|v| !group.reroll.contains(v)).count();
        if faces == 0 {
            return Err(bad(start, "every face is rerolled"));
        }
        if group.explode && faces == 1 && !group.reroll.contains(&sides) {
            return Err(bad(start, "this die always explodes"));
        }
        Ok(Term::Dice(group))
    }
}

impl Notation {
    /// Parses a roll; the error names the byte where it fails.
    pub fn parse(text: &str, limits: &DiceLimits) -> Result<Self, CoreError> {
        if text.len() > MAX_NOTATION {
            return Err(CoreError::new(
                ErrorCode::TooLong,
                format!("dice notation over {MAX_NOTATION} bytes"),
            ));
        }
        let mut p = Parser {
            s: text.as_bytes(),
            at: 0,
        };
        let mut terms = Vec::new();
        let mut negative = false;
        let mut dice = 0u32;
        loop {
            let term = p.term(limits)?;
            if let Term::Dice(g) = &term {
                dice = dice.saturating_add(g.count);
                if dice > limits.max_dice {
                    return Err(bad(p.at, format!("more than {} dice", limits.max_dice)));
                }
            }
            terms.push((negative, term));
            if terms.len() > 20 {
                return Err(bad(p.at, "more than 20 terms"));
            }
            p.skip_spaces();
            match p.peek() {
                None => break,
                Some(b'+') => negative = false,
                Some(b'-') => negative = true,
                Some(c) => return Err(bad(p.at, format!("unexpected '{}'", char::from(c)))),
            }
            p.at += 1;
        }
        Ok(Self { terms })
    }

    /// The least and greatest totals this roll can give with `vars`.
    pub fn bounds(
        &self,
        vars: &BTreeMap<String, i64>,
        limits: &DiceLimits,
    ) -> Result<(i64, i64), CoreError> {
        let (mut lo, mut hi) = (0i64, 0i64);
        for (negative, term) in &self.terms {
            let (a, b) = match term {
                Term::Constant(c) => (*c, *c),
                Term::Variable(name) => {
                    let v = variable(vars, name)?;
                    (v, v)
                }
                Term::Dice(g) => g.bounds(limits),
            };
            if *negative {
                lo = lo.saturating_sub(b);
                hi = hi.saturating_sub(a);
            } else {
                lo = lo.saturating_add(a);
                hi = hi.saturating_add(b);
            }
        }
        Ok((lo, hi))
    }

    /// Rolls with `draw`; the terms hold every die.
    pub fn roll(
        &self,
        vars: &BTreeMap<String, i64>,
        limits: &DiceLimits,
        draw: &mut Draw,
    ) -> Result<(i64, Vec<v1::RollTerm>), CoreError> {
        // The dice written are within max_dice (parse checks); rerolls and explosions may
        // use what is left.
        let written: u32 = self
            .terms
            .iter()
            .map(|(_, t)| match t {
                Term::Dice(g) => g.count,
                _ => 0,
            })
            .sum();
        let mut budget = limits.max_dice.saturating_sub(written);
        let mut total = 0i64;
        let mut out = Vec::with_capacity(self.terms.len());
        for (negative, term) in &self.terms {
            let (value, term) = match term {
                Term::Constant(c) => (*c, v1::roll_term::Term::Constant(*c)),
                Term::Variable(name) => {
                    let value = variable(vars, name)?;
                    (
                        value,
                        v1::roll_term::Term::Variable(v1::Variable {
                            name: name.clone(),
                            value,
                        }),
                    )
                }
                Term::Dice(g) => {
                    let group = g.roll(limits, &mut budget, draw);
                    (group.subtotal, v1::roll_term::Term::Dice(group))
                }
            };
            total = if *negative {
                total.saturating_sub(value)
            } else {
                total.saturating_add(value)
            };
            out.push(v1::RollTerm {
                negative: *negative,
                term: Some(term),
            });
        }
        Ok((total, out))
    }
}

fn variable(vars: &BTreeMap<String, i64>, name: &str) -> Result<i64, CoreError> {
    vars.get(name).copied().ok_or_else(|| {
        CoreError::new(
            ErrorCode::InvalidArgument,
            format!("@{name} is not one of your values; set it first"),
        )
    })
}

impl Group {
    /// The least and greatest face a die can end on. With rerolls that is every face: a
    /// die keeps a value it would reroll once the roll's dice are spent.
    fn faces(&self) -> (i64, i64) {
        (1, i64::from(self.sides))
    }

    /// Kept dice at least and at most, given how many dice the pool can hold.
    fn kept(&self, pool_max: u32) -> (u32, u32) {
        let count = self.count;
        match self.select {
            None => (count, pool_max),
            Some(Select::KeepHighest(n) | Select::KeepLowest(n)) => (n.min(count), n),
            Some(Select::DropHighest(n) | Select::DropLowest(n)) => {
                (count.saturating_sub(n), pool_max.saturating_sub(n))
            }
        }
    }

    fn bounds(&self, limits: &DiceLimits) -> (i64, i64) {
        let (lo, hi) = self.faces();
        // An exploded die is followed by another: a die adds at most max_explode dice, and
        // the roll never holds more than max_dice.
        let pool_max = if self.explode {
            self.count
                .saturating_mul(limits.max_explode.saturating_add(1))
                .min(limits.max_dice)
        } else {
            self.count
        };
        let (kmin, kmax) = self.kept(pool_max);
        (i64::from(kmin) * lo, i64::from(kmax) * hi)
    }

    /// One die: a written one, or one an explosion adds. Rerolls come out of `budget`;
    /// when it is spent the die keeps the value it shows, so a roll never fails after it
    /// has drawn (a refusal that depended on the draw would tell the roller about it).
    fn die(&self, budget: &mut u32, draw: &mut Draw) -> v1::Die {
        let mut value = draw.below(self.sides) + 1;
        let mut rerolled_from = Vec::new();
        while self.reroll.contains(&value) && *budget > 0 {
            *budget -= 1;
            rerolled_from.push(value);
            value = draw.below(self.sides) + 1;
        }
        v1::Die {
            value,
            dropped: false,
            exploded: false,
            from_explosion: false,
            rerolled_from,
        }
    }

    fn roll(&self, limits: &DiceLimits, budget: &mut u32, draw: &mut Draw) -> v1::DiceGroup {
        let mut dice = Vec::with_capacity(self.count as usize);
        for _ in 0..self.count {
            let mut die = self.die(budget, draw);
            let mut depth = 0;
            while self.explode
                && die.value == self.sides
                && depth < limits.max_explode
                && *budget > 0
            {
                *budget -= 1;
                die.exploded = true;
                dice.push(die);
                die = self.die(budget, draw);
                die.from_explosion = true;
                depth += 1;
            }
            dice.push(die);
        }
        if let Some(select) = self.select {
            // Ties keep the earlier die: order by value, then by position.
            let mut order: Vec<usize> = (0..dice.len()).collect();
            order.sort_by_key(|&i| (dice[i].value, i));
            let n = dice.len();
            let dropped: Vec<usize> = match select {
                Select::KeepHighest(k) => order[..n.saturating_sub(k as usize)].to_vec(),
                Select::KeepLowest(k) => order[(k as usize).min(n)..].to_vec(),
                Select::DropHighest(k) => order[n.saturating_sub(k as usize)..].to_vec(),
                Select::DropLowest(k) => order[..(k as usize).min(n)].to_vec(),
            };
            for i in dropped {
                dice[i].dropped = true;
            }
        }
        let subtotal = dice
            .iter()
            .filter(|d| !d.dropped)
            .map(|d| i64::from(d.value))
            .sum();
        v1::DiceGroup {
            count: self.count,
            sides: self.sides,
            modifiers: self.modifiers.clone(),
            dice,
            subtotal,
        }
    }
}
