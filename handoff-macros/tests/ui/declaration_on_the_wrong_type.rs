use handoff::BorrowedHandle;

#[handoff::interface]
trait Misplaced {
    async fn plain(&self, #[handle(file, read)] name: String) -> Result<(), String>;
    #[out(shared_memory, read)]
    async fn region(&self) -> Result<u64, String>;
    async fn state(&self, #[context] session: u64) -> Result<(), String>;
    async fn twice(&self, #[handle(file)] #[context] x: &BorrowedHandle<'static>) -> Result<(), String>;
}

fn main() {}
