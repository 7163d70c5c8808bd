//! A tiny HTTP/1.1 webhook receiver on 127.0.0.1:0 for the tests: records
//! every request and answers what the test's policy says.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// The answer: status, extra headers and a body.
pub type BodyPolicy = dyn Fn(&Request, usize) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync;

pub struct Receiver {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    policy: Arc<Mutex<Arc<BodyPolicy>>>,
}

impl Receiver {
    /// Answers 200 to everything.
    pub fn ok() -> Receiver {
        Receiver::with(|_, _| (200, vec![]))
    }

    pub fn with(policy: impl Fn(&Request, usize) -> (u16, Vec<(String, String)>) + Send + Sync + 'static) -> Receiver {
        Receiver::with_body(move |r, n| {
            let (status, headers) = policy(r, n);
            (status, headers, Vec::new())
        })
    }

    /// Answers with a body too (e.g. a fake doveadm).
    pub fn with_body(
        policy: impl Fn(&Request, usize) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync + 'static,
    ) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let policy: Arc<Mutex<Arc<BodyPolicy>>> = Arc::new(Mutex::new(Arc::new(policy)));
        let (reqs, pol) = (requests.clone(), policy.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let (reqs, pol) = (reqs.clone(), pol.clone());
                std::thread::spawn(move || serve(stream, reqs, pol));
            }
        });
        Receiver { addr, requests, policy }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn set_policy(&self, policy: impl Fn(&Request, usize) -> (u16, Vec<(String, String)>) + Send + Sync + 'static) {
        *self.policy.lock().unwrap() = Arc::new(move |r: &Request, n: usize| {
            let (status, headers) = policy(r, n);
            (status, headers, Vec::new())
        });
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }

    /// Distinct `webhook-id`s among requests answered 2xx... approximated by
    /// all received ids (the policy decides the status; tests that need
    /// "delivered" use an always-200 policy).
    pub fn ids(&self) -> std::collections::HashSet<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.header("webhook-id").to_string())
            .collect()
    }
}

fn serve(stream: TcpStream, reqs: Arc<Mutex<Vec<Request>>>, pol: Arc<Mutex<Arc<BodyPolicy>>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let path = parts.next().unwrap_or("").to_string();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).is_err() {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let req = Request { method, path, headers, body, at: Instant::now() };
        let policy = pol.lock().unwrap().clone();
        let n = {
            let mut r = reqs.lock().unwrap();
            r.push(req.clone());
            r.len()
        };
        let (status, extra, body) = policy(&req, n);
        let mut resp = format!("HTTP/1.1 {status} X\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in extra {
            resp.push_str(&format!("{k}: {v}\r\n"));
        }
        resp.push_str("\r\n");
        let mut bytes = resp.into_bytes();
        bytes.extend_from_slice(&body);
        if writer.write_all(&bytes).is_err() {
            return;
        }
    }
}
