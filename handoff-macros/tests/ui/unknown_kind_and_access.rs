use handoff::BorrowedHandle;

#[handoff::interface]
trait Files {
    async fn read(&self, #[handle(fifo, read)] input: BorrowedHandle<'_>) -> Result<u64, String>;
    async fn write(&self, #[handle(file, readonly)] output: BorrowedHandle<'_>) -> Result<u64, String>;
    async fn both(&self, #[handle(file, read, max = 2, write)] output: BorrowedHandle<'_>) -> Result<u64, String>;
}

fn main() {}
