#[handoff::interface(name = "a", version = "one")]
trait A {
    async fn f(&self) -> Result<(), String>;
}

#[handoff::interface(title = "b")]
trait B {
    async fn f(&self) -> Result<(), String>;
}

fn main() {}
