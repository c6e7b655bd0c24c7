//! Minimal tokio-tungstenite echo server, the comparison peer of
//! `make bench`: a current_thread runtime (pinned to one core by the
//! script), default `WebSocketConfig`, every data message sent back.
//! Usage: tokio-echo ADDR (prints "listening on ADDR" on stderr).

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(msg) = ws.next().await {
        match msg {
            Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                if ws.send(m).await.is_err() {
                    return;
                }
            }
            // A close is answered by tungstenite on the next poll, which
            // then ends the stream.
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = TcpListener::bind(&addr).await.expect("bind");
    eprintln!("listening on {}", listener.local_addr().unwrap());
    loop {
        if let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s));
        }
    }
}
