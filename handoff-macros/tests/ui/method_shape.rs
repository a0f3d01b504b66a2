#[handoff::interface]
trait Shapes {
    fn not_async(&self) -> Result<(), String>;
    async fn mutable(&mut self) -> Result<(), String>;
    async fn no_receiver(x: u32) -> Result<(), String>;
    async fn no_result(&self) -> u32;
    async fn generic<T>(&self, x: T) -> Result<(), String>;
    async fn borrowed(&self, text: &str) -> Result<(), String>;
    const LIMIT: u32;
}

fn main() {}
