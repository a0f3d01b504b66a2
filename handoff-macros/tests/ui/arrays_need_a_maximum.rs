use handoff::{BorrowedHandle, Handle};

#[handoff::interface]
trait Events {
    async fn watch(&self, #[handle(event, read_write)] events: Vec<BorrowedHandle<'_>>) -> Result<(), String>;
    async fn one(&self, #[handle(event, read_write, max = 4)] event: BorrowedHandle<'_>) -> Result<(), String>;
    #[out(event, read_write)]
    async fn make(&self, count: u32) -> Result<Vec<Handle>, String>;
}

fn main() {}
