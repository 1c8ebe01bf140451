//! Headless Chromium (Debian's `chromium`) driven over the DevTools
//! protocol: a page is loaded, scripts are evaluated in it, a screenshot
//! taken, and every console error, uncaught exception and error log entry
//! it reports is kept for the test to assert on.
//!
//! One websocket to the browser, a flattened session to one page; calls are
//! synchronous (send, then read until the answer), and events read on the
//! way are recorded.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};
use tungstenite::{Message, WebSocket};

/// How long one DevTools call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Browser {
    child: Child,
    socket: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    /// Console errors, exceptions and error log entries, as one line each.
    errors: Vec<String>,
}

/// The `chromium` binary, or an error saying how to get it.
pub fn chromium() -> anyhow::Result<&'static str> {
    for name in ["chromium", "chromium-browser"] {
        let found = Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return Ok(name);
        }
    }
    bail!("chromium is not installed: run scripts/install-deps.sh (Debian's `chromium` package)")
}

impl Browser {
    /// Starts headless Chromium with its profile in `profile` and opens
    /// one blank page. Certificate errors are ignored: the test's servers
    /// use a CA of their own that the browser does not know.
    pub fn launch(profile: &Path) -> anyhow::Result<Browser> {
        let mut child = Command::new(chromium()?)
            .args([
                "--headless",
                // Root in containers has no user namespaces to sandbox in.
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--disable-background-networking",
                "--disable-sync",
                "--disable-component-update",
                "--no-first-run",
                "--no-default-browser-check",
                "--ignore-certificate-errors",
                "--remote-debugging-port=0",
                "--window-size=1280,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("start chromium")?;
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::channel();
        // Reads stderr for chromium's whole life, so it never blocks on a
        // full pipe; the DevTools address is its one line we need.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_string());
                    }
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("chromium never printed its DevTools address");
            }
        };
        let host = url
            .strip_prefix("ws://")
            .and_then(|rest| rest.split('/').next())
            .ok_or_else(|| anyhow!("odd DevTools address {url}"))?;
        let tcp = TcpStream::connect(host).context("connect to DevTools")?;
        tcp.set_read_timeout(Some(CALL_TIMEOUT))?;
        let (socket, _) = tungstenite::client(url.as_str(), tcp)
            .map_err(|e| anyhow!("DevTools websocket handshake: {e}"))?;
        let mut browser = Browser {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            errors: Vec::new(),
        };
        let target = browser.call_browser("Target.createTarget", json!({"url": "about:blank"}))?;
        let target_id = target["targetId"]
            .as_str()
            .ok_or_else(|| anyhow!("no targetId in {target}"))?
            .to_string();
        let attached = browser.call_browser(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )?;
        browser.session = attached["sessionId"]
            .as_str()
            .ok_or_else(|| anyhow!("no sessionId in {attached}"))?
            .to_string();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser.call(domain, json!({}))?;
        }
        Ok(browser)
    }

    /// Console errors, uncaught exceptions and error log entries so far.
    pub fn errors(&self) -> &[String] {
        &self.errors
    }

    /// Takes the errors recorded so far.
    pub fn take_errors(&mut self) -> Vec<String> {
        std::mem::take(&mut self.errors)
    }

    pub fn navigate(&mut self, url: &str) -> anyhow::Result<()> {
        let r = self.call("Page.navigate", json!({"url": url}))?;
        if let Some(e) = r["errorText"].as_str() {
            bail!("navigating to {url}: {e}");
        }
        Ok(())
    }

    /// The value of `expression` evaluated in the page (awaited if a promise).
    pub fn evaluate(&mut self, expression: &str) -> anyhow::Result<Value> {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(ex) = r.get("exceptionDetails") {
            bail!("{expression} threw: {ex}");
        }
        Ok(r["result"]["value"].clone())
    }

    /// Evaluates `expression` until it gives something other than null or
    /// false, and returns that; fails after `timeout`. Exceptions while the
    /// page loads (a document replaced mid-call) count as not yet.
    pub fn wait_for(&mut self, expression: &str, timeout: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            match self.evaluate(expression) {
                Ok(v) if !v.is_null() && v != Value::Bool(false) => return Ok(v),
                Ok(v) => last = v,
                Err(e) => last = Value::String(e.to_string()),
            }
            // The page draws once a second: no use asking much more often.
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("{expression} never held within {timeout:?} (last: {last})")
    }

    /// A PNG of the whole page.
    pub fn screenshot(&mut self, to: &Path) -> anyhow::Result<()> {
        use base64::Engine as _;
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        )?;
        let data = r["data"]
            .as_str()
            .ok_or_else(|| anyhow!("no screenshot data"))?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        if let Some(dir) = to.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(to, png)?;
        Ok(())
    }

    fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        let session = self.session.clone();
        self.send(method, params, Some(session))
    }

    fn call_browser(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.send(method, params, None)
    }

    fn send(
        &mut self,
        method: &str,
        params: Value,
        session: Option<String>,
    ) -> anyhow::Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.socket
            .send(Message::text(msg.to_string()))
            .with_context(|| format!("send {method}"))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        while Instant::now() < deadline {
            let text = match self
                .socket
                .read()
                .with_context(|| format!("await {method}"))?
            {
                Message::Text(t) => t.to_string(),
                Message::Close(_) => bail!("chromium closed the DevTools connection"),
                _ => continue,
            };
            let v: Value = serde_json::from_str(&text)?;
            if v["id"].as_u64() == Some(id) {
                if let Some(e) = v.get("error") {
                    bail!("{method}: {e}");
                }
                return Ok(v["result"].clone());
            }
            self.record(&v);
        }
        bail!("{method}: no answer within {CALL_TIMEOUT:?}")
    }

    /// Keeps what counts as an error of the page.
    fn record(&mut self, event: &Value) {
        let p = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.consoleAPICalled")
                if matches!(p["type"].as_str(), Some("error" | "assert")) =>
            {
                let args: Vec<String> = p["args"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|a| {
                        a["value"]
                            .as_str()
                            .map(str::to_string)
                            .or_else(|| a["description"].as_str().map(str::to_string))
                            .unwrap_or_else(|| a.to_string())
                    })
                    .collect();
                self.errors.push(format!(
                    "console.{}: {}",
                    p["type"].as_str().unwrap_or(""),
                    args.join(" ")
                ));
            }
            Some("Runtime.exceptionThrown") => {
                let d = &p["exceptionDetails"];
                self.errors.push(format!(
                    "exception: {} {}",
                    d["text"].as_str().unwrap_or(""),
                    d["exception"]["description"].as_str().unwrap_or("")
                ));
            }
            Some("Log.entryAdded") if p["entry"]["level"].as_str() == Some("error") => {
                let e = &p["entry"];
                self.errors.push(format!(
                    "log ({}): {} {}",
                    e["source"].as_str().unwrap_or(""),
                    e["text"].as_str().unwrap_or(""),
                    e["url"].as_str().unwrap_or("")
                ));
            }
            _ => {}
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Asks it to close (its helper processes go with it), then makes sure.
        let _ = self.call_browser("Browser.close", json!({}));
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
