//! `tikv-standin [LISTEN-ADDRESS]`: run the stand-in (a test double of one PD and one TiKV
//! store on one port; not TiKV) until killed. Prints the address to give as the PD endpoint,
//! e.g. `tikv://127.0.0.1:PORT/volname`. Nothing is kept on disk.

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_string());
    let (_standin, addr) = tikv_standin::StandIn::start(&listen).await?;
    println!("{addr}");
    use std::io::Write;
    std::io::stdout().flush()?;
    tokio::signal::ctrl_c().await?;
    Ok(())
}
