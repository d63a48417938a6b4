//! Every answer is read up to the client's bound: a server that sends an
//! endless body, or announces a huge one, gets a clear error naming the host,
//! the connection and the bound, and the client stops reading.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tether_core::http::{HttpClient, RetryPolicy, DEFAULT_MAX_PAGE_BYTES};
use tether_core::{SourceError, StaticToken};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy)]
enum Answer {
    /// A chunked body that never ends, 64 KiB a chunk.
    Endless,
    /// Announces this many bytes, then sends none.
    Announces(u64),
    /// A body of this many bytes, with its `Content-Length`.
    Exactly(usize),
}

/// A local server answering every request as `answer` says; counts the bytes
/// of body it managed to write.
async fn server(answer: Answer) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://127.0.0.1:{}/page",
        listener.local_addr().unwrap().port()
    );
    let written = Arc::new(AtomicU64::new(0));
    let counter = written.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut socket, _)) = listener.accept().await else {
                return;
            };
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = socket.read(&mut buf).await;
                match answer {
                    Answer::Endless => {
                        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
                        if socket.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk = format!("10000\r\n{}\r\n", "x".repeat(0x10000));
                        // Bounded so that a broken client cannot hang the test forever.
                        for _ in 0..16_384 {
                            if socket.write_all(chunk.as_bytes()).await.is_err() {
                                return;
                            }
                            counter.fetch_add(0x10000, Ordering::SeqCst);
                        }
                    }
                    Answer::Announces(n) => {
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.read(&mut buf).await;
                    }
                    Answer::Exactly(n) => {
                        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
                        let _ = socket.write_all(head.as_bytes()).await;
                        let _ = socket.write_all(&vec![b'7'; n]).await;
                        counter.fetch_add(n as u64, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    (url, written)
}

fn client(limit: u64) -> HttpClient {
    HttpClient::build_default(
        2,
        RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        },
    )
    .with_max_answer_bytes(limit)
    .for_connection("Acme - Engineering")
}

async fn get(http: &HttpClient, url: &str) -> Result<tether_core::http::RawResponse, SourceError> {
    let token = StaticToken::new("t".to_owned().into());
    http.send(&token, |c, t| c.get(url).bearer_auth(t), |_| Ok(()))
        .await
}

#[tokio::test]
async fn an_endless_body_is_cut_at_the_bound_with_a_clear_error() {
    let (url, written) = server(Answer::Endless).await;
    let err = get(&client(1024 * 1024), &url).await.unwrap_err();
    let SourceError::BadData { message, .. } = &err else {
        panic!("expected bad data, got {err:?}");
    };
    assert!(
        message.contains("the answer from 127.0.0.1 for Acme - Engineering exceeded 1 MiB"),
        "{message}"
    );
    assert!(message.contains("[limits] max_page_mib"), "{message}");
    assert_eq!(err.code(), "bad_data");
    assert!(
        !err.is_retryable(),
        "a retry would read the same endless body"
    );
    // The client hung up: the server could not write the whole 1 GiB.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        written.load(Ordering::SeqCst) < 64 * 1024 * 1024,
        "the client kept reading: {} bytes",
        written.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn an_announced_length_beyond_the_bound_is_refused_before_reading() {
    let (url, _) = server(Answer::Announces(DEFAULT_MAX_PAGE_BYTES + 1)).await;
    let http = HttpClient::build_default(
        2,
        RetryPolicy {
            max_attempts: 1,
            ..Default::default()
        },
    );
    assert_eq!(http.max_answer_bytes(), DEFAULT_MAX_PAGE_BYTES);
    let err = get(&http, &url).await.unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("the answer from 127.0.0.1 exceeded 32 MiB"),
        "{text}"
    );
}

#[tokio::test]
async fn a_body_at_the_bound_is_read_whole_and_one_byte_more_is_not() {
    let (url, _) = server(Answer::Exactly(4096)).await;
    let resp = get(&client(4096), &url).await.unwrap();
    assert_eq!(resp.body.len(), 4096);
    let err = get(&client(4095), &url).await.unwrap_err();
    assert!(err.to_string().contains("exceeded 4095 bytes"), "{err}");
}
