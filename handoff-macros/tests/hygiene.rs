//! The generated code names everything by absolute path: it compiles with
//! no prelude and with user items that shadow common names.
#![no_implicit_prelude]
#![allow(dead_code)]

/// Items named like what the generated code uses, to catch any path that
/// is not absolute.
mod shadows {
    pub struct Result;
    pub struct Option;
    pub struct Vec;
    pub struct Box;
    pub struct Arc;
    pub struct Handle;
    pub struct Error;
}
#[allow(unused_imports)]
use shadows::*;

#[derive(::serde::Serialize, ::serde::Deserialize, ::core::fmt::Debug)]
pub struct Failure(::std::string::String);

#[derive(::core::fmt::Debug)]
pub struct State {
    count: ::std::sync::atomic::AtomicU32,
}

#[::handoff::interface(name = "hygiene.Everything", version = 7)]
pub trait Everything {
    async fn plain(&self, a: u32, b: ::std::string::String)
        -> ::core::result::Result<u64, Failure>;
    async fn handles(
        &self,
        #[handle(file, read)] one: ::handoff::BorrowedHandle<'_>,
        #[handle(any)] maybe: ::core::option::Option<::handoff::BorrowedHandle<'_>>,
        #[handle(event, read_write, max = 4)] many: ::std::vec::Vec<::handoff::BorrowedHandle<'_>>,
    ) -> ::core::result::Result<(), Failure>;
    /// Every kind word not used above: each becomes a path to a
    /// `handoff::KindName` variant, which must exist for this to compile.
    async fn other_kinds(
        &self,
        #[handle(directory)] a: ::handoff::BorrowedHandle<'_>,
        #[handle(pipe, write)] b: ::handoff::BorrowedHandle<'_>,
        #[handle(socket)] c: ::handoff::BorrowedHandle<'_>,
    ) -> ::core::result::Result<(), Failure>;
    async fn more_kinds(
        &self,
        #[handle(process)] d: ::handoff::BorrowedHandle<'_>,
        #[handle(timer)] e: ::handoff::BorrowedHandle<'_>,
        #[handle(terminal)] f: ::handoff::BorrowedHandle<'_>,
        #[handle(other)] g: ::handoff::BorrowedHandle<'_>,
    ) -> ::core::result::Result<(), Failure>;
    #[out(shared_memory, read)]
    async fn out_one(&self) -> ::core::result::Result<::handoff::Handle, Failure>;
    #[out(file)]
    async fn out_maybe(
        &self,
    ) -> ::core::result::Result<::core::option::Option<::handoff::Handle>, Failure>;
    #[out(event, read_write, max = 3)]
    async fn out_many(&self)
        -> ::core::result::Result<::std::vec::Vec<::handoff::Handle>, Failure>;
    async fn open(&self) -> ::core::result::Result<::handoff::rpc::Context<State>, Failure>;
    async fn use_it(&self, #[context] state: &State) -> ::core::result::Result<u32, Failure>;
}

#[test]
fn identity_and_items_are_generated() {
    let id = EverythingClient::IDENTITY;
    ::std::assert_eq!(id.name, "hygiene.Everything");
    ::std::assert_eq!(id.version, 7);
    ::std::assert_eq!(EverythingBlockingClient::IDENTITY, id);
    ::std::assert_eq!(EverythingServer::<Nothing>::IDENTITY, id);
}

/// An implementation, to show the rewritten trait is implementable with
/// `async fn` in an unprelude'd module too.
#[derive(::core::fmt::Debug)]
pub struct Nothing;

impl Everything for Nothing {
    async fn plain(
        &self,
        a: u32,
        _b: ::std::string::String,
    ) -> ::core::result::Result<u64, Failure> {
        ::core::result::Result::Ok(::core::convert::From::from(a))
    }
    async fn handles(
        &self,
        _one: ::handoff::BorrowedHandle<'_>,
        _maybe: ::core::option::Option<::handoff::BorrowedHandle<'_>>,
        _many: ::std::vec::Vec<::handoff::BorrowedHandle<'_>>,
    ) -> ::core::result::Result<(), Failure> {
        ::core::result::Result::Ok(())
    }
    async fn other_kinds(
        &self,
        _a: ::handoff::BorrowedHandle<'_>,
        _b: ::handoff::BorrowedHandle<'_>,
        _c: ::handoff::BorrowedHandle<'_>,
    ) -> ::core::result::Result<(), Failure> {
        ::core::result::Result::Ok(())
    }
    async fn more_kinds(
        &self,
        _d: ::handoff::BorrowedHandle<'_>,
        _e: ::handoff::BorrowedHandle<'_>,
        _f: ::handoff::BorrowedHandle<'_>,
        _g: ::handoff::BorrowedHandle<'_>,
    ) -> ::core::result::Result<(), Failure> {
        ::core::result::Result::Ok(())
    }
    async fn out_one(&self) -> ::core::result::Result<::handoff::Handle, Failure> {
        ::core::result::Result::Err(Failure(::std::string::String::new()))
    }
    async fn out_maybe(
        &self,
    ) -> ::core::result::Result<::core::option::Option<::handoff::Handle>, Failure> {
        ::core::result::Result::Ok(::core::option::Option::None)
    }
    async fn out_many(
        &self,
    ) -> ::core::result::Result<::std::vec::Vec<::handoff::Handle>, Failure> {
        ::core::result::Result::Ok(::std::vec::Vec::new())
    }
    async fn open(&self) -> ::core::result::Result<::handoff::rpc::Context<State>, Failure> {
        ::core::result::Result::Ok(::handoff::rpc::Context::new(State {
            count: ::std::sync::atomic::AtomicU32::new(0),
        }))
    }
    async fn use_it(&self, state: &State) -> ::core::result::Result<u32, Failure> {
        ::core::result::Result::Ok(
            state
                .count
                .fetch_add(1, ::std::sync::atomic::Ordering::Relaxed)
                + 1,
        )
    }
}
