use handoff::{BorrowedHandle, Handle};

#[handoff::interface]
trait Files {
    async fn read(&self, file: BorrowedHandle<'_>) -> Result<u64, String>;
    async fn open(&self, path: String) -> Result<Handle, String>;
}

fn main() {}
