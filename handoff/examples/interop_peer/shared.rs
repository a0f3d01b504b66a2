//! What the Rust and Python peers of the interop tests agree on: the RPC
//! interface, the typed values, and a small seeded generator of random
//! values. `python/tests/shared.py` declares the same things in Python.
//! Used by `examples/interop_peer` and `tests/python_interop.rs`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;

use handoff::rpc::Context;
use handoff::{BorrowedHandle, Handle};
use serde::{Deserialize, Serialize};

/// The application error of the interface (a newtype: just its string).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn fail(e: impl std::fmt::Display) -> Failure {
    Failure(e.to_string())
}

/// State behind a context handle.
#[derive(Debug)]
pub struct Session {
    pub name: String,
    pub lines: Mutex<Vec<String>>,
}

#[handoff::interface(name = "interop.Files", version = 1)]
pub trait Files {
    /// 0: writes `text` to the file, returns the bytes written.
    async fn write_file(
        &self,
        #[handle(file, write)] file: BorrowedHandle<'_>,
        text: String,
    ) -> Result<u64, Failure>;
    /// 1: reads the pipe to its end, if one came.
    async fn read_pipe(
        &self,
        #[handle(pipe, read)] pipe: Option<BorrowedHandle<'_>>,
    ) -> Result<Option<String>, Failure>;
    /// 2: adds `add` to every eventfd's counter; returns how many.
    async fn signal_all(
        &self,
        #[handle(event, read_write, max = 8)] events: Vec<BorrowedHandle<'_>>,
        add: u64,
    ) -> Result<u32, Failure>;
    /// 3: sealed shared memory holding `text` (startup-data layout).
    #[out(shared_memory, read)]
    async fn region(&self, text: String) -> Result<Handle, Failure>;
    /// 4: `count` new eventfds with counter `i + 1` each.
    #[out(event, read_write, max = 8)]
    async fn events(&self, count: u32) -> Result<Vec<Handle>, Failure>;
    /// 5
    async fn open_session(&self, name: String) -> Result<Context<Session>, Failure>;
    /// 6: appends a line, returns the session's name and line count.
    async fn log(
        &self,
        #[context] session: &Session,
        line: String,
    ) -> Result<(String, u32), Failure>;
    /// 7: always the application error `Failure(text)`.
    async fn refuse(&self, text: String) -> Result<u32, Failure>;
}

/// The canonical text of `interop.Files` (docs/wire-format.md, "Interface
/// hash"); docs/wire-vectors.json holds it with its hash.
pub const FILES_CANONICAL: &str =
    "write_file(file:handle[file,write,1]one;text:value:String;)->value:u64|Failure\n\
read_pipe(pipe:handle[pipe,read,1]optional;)->value:Option<String>|Failure\n\
signal_all(events:handle[event,read_write,8]many;add:value:u64;)->value:u32|Failure\n\
region(text:value:String;)->out[shared-memory,read,1]one|Failure\n\
events(count:value:u32;)->out[event,read_write,8]many|Failure\n\
open_session(name:value:String;)->context|Failure\n\
log(session:context;line:value:String;)->value:(String,u32)|Failure\n\
refuse(text:value:String;)->value:u32|Failure\n";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Shape {
    Empty,
    Circle(u32),
    Rect { w: u16, h: u16 },
}

/// Every value type of the documented data model, no handles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub a: u8,
    pub b: i16,
    pub c: u32,
    pub d: i64,
    pub e: u128,
    pub f: bool,
    pub g: char,
    pub h: String,
    #[serde(with = "serde_bytes")]
    pub i: Vec<u8>,
    pub j: Option<u32>,
    pub k: [u16; 3],
    pub l: (i8, String),
    pub m: Vec<Shape>,
    pub n: BTreeMap<String, u64>,
    pub o: f64,
    pub p: (),
}

/// Handles inside a value: one, an optional one, a list.
#[derive(Debug, Serialize, Deserialize)]
pub struct WithHandles {
    pub label: String,
    pub file: Handle,
    pub maybe: Option<Handle>,
    pub many: Vec<Handle>,
}

/// What the typed channels of the interop tests carry.
#[derive(Debug, Serialize, Deserialize)]
pub enum Envelope {
    Sample(Sample),
    Handles(WithHandles),
}

/// xorshift64*: a seeded generator, so a failing run can be repeated.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn text(&mut self) -> String {
        const CHARS: &[char] = &['a', 'z', ' ', 'é', 'ß', '€', '😀', '\0', '\n', '𝄞'];
        (0..self.below(12))
            .map(|_| CHARS[self.below(CHARS.len() as u64) as usize])
            .collect()
    }

    pub fn sample(&mut self) -> Sample {
        const CHARS: &[char] = &[
            'x',
            '\u{7f}',
            '\u{80}',
            'é',
            '\u{7ff}',
            '\u{800}',
            '€',
            '\u{ffff}',
            '\u{10000}',
            '\u{10ffff}',
        ];
        let shapes = (0..self.below(4))
            .map(|_| match self.below(3) {
                0 => Shape::Empty,
                1 => Shape::Circle(self.next() as u32),
                _ => Shape::Rect {
                    w: self.next() as u16,
                    h: self.next() as u16,
                },
            })
            .collect();
        let map = (0..self.below(4))
            .map(|_| (self.text(), self.next()))
            .collect();
        Sample {
            a: self.next() as u8,
            b: self.next() as i16,
            c: self.next() as u32,
            d: self.next() as i64,
            e: (u128::from(self.next()) << 64) | u128::from(self.next()),
            f: self.below(2) == 1,
            g: CHARS[self.below(CHARS.len() as u64) as usize],
            h: self.text(),
            i: (0..self.below(40)).map(|_| self.next() as u8).collect(),
            j: if self.below(2) == 1 {
                Some(self.next() as u32)
            } else {
                None
            },
            k: [self.next() as u16, self.next() as u16, self.next() as u16],
            l: (self.next() as i8, self.text()),
            m: shapes,
            n: map,
            // Finite, so equality means equal bits.
            o: (self.next() as i64) as f64 / 1024.0,
            p: (),
        }
    }
}
