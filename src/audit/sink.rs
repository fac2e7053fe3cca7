//! The audit writer: records go through a bounded queue to one thread that gives each its
//! place in the hash chain and writes it to the file (rotated by size) and/or standard
//! output. Requests never wait for the disk: they wait only when the queue is full and the
//! policy is `block`; with `drop` the record is counted, and the writer puts a `gap` record
//! where the dropped ones would have been.
//!
//! The file's chain goes on across rotations and restarts: at start-up the writer reads
//! the last record of the trail and links the next one to it.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError, TrySendError};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};

use super::chain::{self, Chain, Hasher};
use super::event::{Body, Record};
use crate::config::audit::{AuditConfig, WhenFull};

/// How long the writer lets records gather between writes while records keep coming.
const BATCH_PAUSE: Duration = Duration::from_millis(2);

/// Empty rounds (of [`BATCH_PAUSE`]) after which the writer blocks until the next record.
const IDLE_ROUNDS: u32 = 50;

/// What the writer is asked to do.
#[derive(Debug)]
enum Item {
    Record(Record),
    /// Everything queued before this is written and flushed; then the sender is told.
    Flush(SyncSender<()>),
}

/// The writer's gauges and counters (see `audit::metrics`).
#[derive(Debug, Clone)]
pub struct SinkMetrics {
    pub queue: IntGauge,
    pub dropped: IntCounter,
    pub records: IntCounter,
    pub write_errors: IntCounter,
}

/// The handle requests write through.
#[derive(Debug)]
pub struct AuditLog {
    sender: SyncSender<Item>,
    /// Set by [`AuditLog::close`]: records sent afterwards are not written.
    closed: std::sync::atomic::AtomicBool,
    when_full: WhenFull,
    /// Records dropped since the writer last wrote a `gap` record.
    dropped: Arc<AtomicU64>,
    metrics: SinkMetrics,
}

/// Why the trail cannot be opened.
#[derive(Debug, thiserror::Error)]
#[error("audit.file `{path}`: {source}")]
pub struct OpenError {
    path: String,
    source: io::Error,
}

impl AuditLog {
    /// Opens the trail (continuing its chain) and starts the writer thread.
    pub fn start(config: &AuditConfig, metrics: SinkMetrics) -> Result<Self, OpenError> {
        let hasher = config
            .hmac_key
            .as_ref()
            .map_or(Hasher::Sha256, |key| Hasher::keyed(key.expose().as_bytes()));
        let (file, chain) = match &config.file {
            Some(path) => {
                let at = |source| OpenError {
                    path: path.display().to_string(),
                    source,
                };
                let sink = FileSink::open(path, config.max_file_size.get(), config.max_files)
                    .map_err(at)?;
                let chain = sink.continue_chain(hasher).map_err(at)?;
                (Some(sink), chain)
            }
            None => (None, Chain::new(hasher)),
        };
        let stdout = config
            .to_stdout()
            .then(|| BufWriter::with_capacity(64 * 1024, io::stdout()));
        let (sender, receiver) = mpsc::sync_channel(config.queue.max(1));
        let dropped = Arc::new(AtomicU64::new(0));
        let mut writer = Writer {
            chain,
            file,
            fsync: config.fsync,
            stdout,
            line: Vec::with_capacity(4096),
            event: Vec::with_capacity(2048),
            dropped: Arc::clone(&dropped),
            metrics: metrics.clone(),
            failing: false,
        };
        // Detached: it ends when this handle (the channel's only sender) is dropped, after
        // writing what is still queued.
        std::thread::Builder::new()
            .name("portcullis-audit".into())
            .spawn(move || writer.run(&receiver))
            .map_err(|source| OpenError {
                path: "(writer thread)".into(),
                source,
            })?;
        Ok(Self {
            sender,
            closed: std::sync::atomic::AtomicBool::new(false),
            when_full: config.when_full,
            dropped,
            metrics,
        })
    }

    /// Queues a record. With `block`, waits for room when the queue is full.
    pub fn send(&self, record: Record) {
        if self.closed.load(Ordering::Relaxed) {
            return;
        }
        self.metrics.queue.inc();
        let item = Item::Record(record);
        let sent = match self.when_full {
            WhenFull::Block => self.sender.send(item).is_ok(),
            WhenFull::Drop => match self.sender.try_send(item) {
                Ok(()) => true,
                Err(TrySendError::Full(_)) => {
                    self.dropped.fetch_add(1, Ordering::Relaxed);
                    self.metrics.dropped.inc();
                    false
                }
                Err(TrySendError::Disconnected(_)) => false,
            },
        };
        if !sent {
            self.metrics.queue.dec();
        }
    }

    /// Waits until every record queued so far is written and flushed.
    pub fn flush(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        if self.sender.send(Item::Flush(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// Writes `last` after everything queued, flushes it all to disk, and takes no more
    /// records (blocking: call from a blocking context). The writer thread ends when this
    /// handle is dropped.
    pub fn close(&self, last: Record) {
        // The last record waits for room whatever the policy: it says the trail ends here.
        self.metrics.queue.inc();
        if self.sender.send(Item::Record(last)).is_err() {
            self.metrics.queue.dec();
        }
        self.closed.store(true, Ordering::Relaxed);
        self.flush();
    }
}

/// The writer thread's state.
struct Writer {
    chain: Chain,
    file: Option<FileSink>,
    /// `[audit] fsync`: each batch synced to the disk after it is written.
    fsync: bool,
    stdout: Option<BufWriter<io::Stdout>>,
    line: Vec<u8>,
    event: Vec<u8>,
    dropped: Arc<AtomicU64>,
    metrics: SinkMetrics,
    /// Writing failed and the failure was logged: log the next success.
    failing: bool,
}

impl Writer {
    /// Writes what the queue holds every [`BATCH_PAUSE`], in one write per batch. Senders
    /// then never have to wake the writer (a system call per record); only after
    /// [`IDLE_ROUNDS`] empty rounds does it block until the next record arrives. Every
    /// batch is flushed to the operating system as soon as it is written, the one that
    /// woke the writer included: a record is in the file within a few milliseconds of its
    /// exchange ending, however quiet the gateway.
    fn run(&mut self, receiver: &Receiver<Item>) {
        let mut idle = 0;
        loop {
            let mut got = false;
            if idle >= IDLE_ROUNDS {
                match receiver.recv() {
                    Ok(item) => {
                        self.handle(item);
                        got = true;
                    }
                    Err(_) => {
                        self.flush();
                        return;
                    }
                }
            }
            loop {
                match receiver.try_recv() {
                    Ok(item) => {
                        self.handle(item);
                        got = true;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        self.flush();
                        return;
                    }
                }
            }
            if got {
                self.flush();
                if self.fsync {
                    self.sync();
                }
                idle = 0;
            } else {
                idle += 1;
            }
            if idle < IDLE_ROUNDS {
                std::thread::sleep(BATCH_PAUSE);
            }
        }
    }

    /// The file's written records synced to the disk.
    fn sync(&mut self) {
        if let Some(file) = &mut self.file {
            let result = file.file.get_ref().sync_data();
            self.outcome(result);
        }
    }

    fn handle(&mut self, item: Item) {
        match item {
            Item::Record(record) => {
                self.metrics.queue.dec();
                self.write_gap();
                self.write(&record);
            }
            Item::Flush(done) => {
                self.write_gap();
                self.flush();
                if let Some(file) = &mut self.file {
                    let _ = file.file.get_ref().sync_data();
                }
                let _ = done.send(());
            }
        }
    }

    /// A `gap` record for records dropped since the last one.
    fn write_gap(&mut self) {
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            self.write(&Record::now(Body::Gap { dropped }));
        }
    }

    fn write(&mut self, record: &Record) {
        self.event.clear();
        if record.write_json(&mut self.event).is_err() {
            tracing::error!("An audit record could not be serialised; it is lost");
            self.metrics.write_errors.inc();
            return;
        }
        self.line.clear();
        self.chain.seal_into(&self.event, &mut self.line);
        let mut result = Ok(());
        if let Some(file) = &mut self.file {
            result = file.write_line(&self.line);
        }
        if let Some(stdout) = &mut self.stdout {
            result = result.and(stdout.write_all(&self.line));
        }
        self.outcome(result);
        self.metrics.records.inc();
    }

    fn flush(&mut self) {
        let mut result = Ok(());
        if let Some(file) = &mut self.file {
            result = file.file.flush();
        }
        if let Some(stdout) = &mut self.stdout {
            result = result.and(stdout.flush());
        }
        self.outcome(result);
    }

    fn outcome(&mut self, result: io::Result<()>) {
        match result {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::warn!("Writing the audit trail works again");
            }
            Ok(()) => {}
            Err(e) => {
                self.metrics.write_errors.inc();
                if !self.failing {
                    self.failing = true;
                    tracing::error!(error = %e, "Cannot write the audit trail");
                }
            }
        }
    }
}

/// The trail's file, rotated by size.
struct FileSink {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    max_size: u64,
    max_files: usize,
    /// The number the next rotated file gets.
    next: u32,
}

impl FileSink {
    fn open(path: &Path, max_size: u64, max_files: usize) -> io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        let next = rotated(path)?.last().map_or(1, |(n, _)| n + 1);
        Ok(Self {
            path: path.to_path_buf(),
            file: BufWriter::with_capacity(256 * 1024, file),
            size,
            max_size,
            max_files,
            next,
        })
    }

    /// The chain after the last record of the trail (the current file, else the newest
    /// rotated one); a new chain when there is none. A last line cut off by a crash is
    /// ended with a newline so what follows starts on a line of its own (`verify` names
    /// the cut record).
    fn continue_chain(&self, hasher: Hasher) -> io::Result<Chain> {
        let mut candidates = vec![self.path.clone()];
        candidates.extend(rotated(&self.path)?.into_iter().rev().map(|(_, p)| p));
        for path in candidates {
            let (last, cut) = last_record(&path)?;
            if cut {
                OpenOptions::new()
                    .append(true)
                    .open(&path)?
                    .write_all(b"\n")?;
                tracing::warn!(file = %path.display(), "The audit trail's last line was cut off (a crash?); `portcullis audit verify` will name it");
            }
            if let Some(line) = last {
                return Chain::after(hasher, &line).map_err(|e| {
                    io::Error::other(format!(
                        "its last record cannot be continued ({e}); move the file away to start a new trail"
                    ))
                });
            }
        }
        Ok(Chain::new(hasher))
    }

    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64;
        if self.size > 0 && self.size + len > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += len;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        self.file.get_ref().sync_data()?;
        let to = numbered(&self.path, self.next);
        std::fs::rename(&self.path, &to)?;
        self.next += 1;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.file = BufWriter::with_capacity(256 * 1024, file);
        self.size = 0;
        if self.max_files > 0 {
            let all = rotated(&self.path)?;
            let excess = all.len().saturating_sub(self.max_files);
            for (_, old) in all.into_iter().take(excess) {
                std::fs::remove_file(old)?;
            }
        }
        Ok(())
    }
}

/// `FILE.000042`.
fn numbered(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n:06}"));
    PathBuf::from(name)
}

/// The rotated files of `path`, oldest first.
fn rotated(path: &Path) -> io::Result<Vec<(u32, PathBuf)>> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let Some(base) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(n) = name
            .to_str()
            .and_then(|n| n.strip_prefix(base)?.strip_prefix('.'))
            .filter(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        found.push((n, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// The last complete line of a file that is a record, and whether the file ends in a cut
/// line. Reads backwards from the end, a growing block at a time.
fn last_record(path: &Path) -> io::Result<(Option<String>, bool)> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((None, false)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok((None, false));
    }
    let mut block: u64 = 64 * 1024;
    loop {
        let start = len.saturating_sub(block);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        Read::by_ref(&mut file)
            .take(len - start)
            .read_to_end(&mut tail)?;
        let cut = tail.last() != Some(&b'\n');
        let text = String::from_utf8_lossy(&tail);
        let mut lines: Vec<&str> = text.split_terminator('\n').collect();
        if cut {
            lines.pop();
        }
        // The first line of a block that does not start the file may be partial.
        let whole = if start == 0 {
            &lines[..]
        } else {
            lines.get(1..).unwrap_or_default()
        };
        if let Some(line) = whole
            .iter()
            .rev()
            .find(|l| chain::Chain::after(Hasher::Sha256, l).is_ok())
        {
            return Ok((Some((*line).to_owned()), cut));
        }
        if start == 0 {
            return Ok((None, cut));
        }
        block = block.saturating_mul(4);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Kind;

    #[test]
    fn with_drop_a_full_queue_loses_records_but_the_trail_says_how_many() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let config = AuditConfig {
            file: Some(path.clone()),
            queue: 1,
            when_full: WhenFull::Drop,
            ..AuditConfig::default()
        };
        let metrics = crate::audit::metrics::Metrics::new().unwrap().audit;
        let log = AuditLog::start(&config, metrics.clone()).unwrap();
        let sent = 20_000_u64;
        for _ in 0..sent {
            log.send(Record::now(Body::Started {
                version: "test",
                chain: "sha256",
            }));
        }
        log.close(Record::now(Body::Stopped));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(chain::verify(&Hasher::Sha256, [text.as_str()]).is_ok());
        let records: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let written = records.iter().filter(|r| r["event"] == "started").count() as u64;
        let gaps: u64 = records
            .iter()
            .filter(|r| r["event"] == Kind::Gap.as_str())
            .map(|r| r["dropped"].as_u64().unwrap())
            .sum();
        assert!(
            gaps > 0,
            "a one-record queue cannot keep up with a tight loop"
        );
        assert_eq!(
            written + gaps,
            sent,
            "every record is written or counted in a gap"
        );
        assert_eq!(metrics.dropped.get(), gaps);
        assert_eq!(metrics.queue.get(), 0);
        assert_eq!(records.last().unwrap()["event"], "stopped");
    }

    #[test]
    fn with_block_nothing_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let config = AuditConfig {
            file: Some(path.clone()),
            queue: 1,
            ..AuditConfig::default()
        };
        let metrics = crate::audit::metrics::Metrics::new().unwrap().audit;
        let log = AuditLog::start(&config, metrics.clone()).unwrap();
        for _ in 0..5_000 {
            log.send(Record::now(Body::Started {
                version: "test",
                chain: "sha256",
            }));
        }
        log.close(Record::now(Body::Stopped));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            chain::verify(&Hasher::Sha256, [text.as_str()]).unwrap(),
            5_001
        );
        assert_eq!(metrics.dropped.get(), 0);
        assert_eq!(metrics.records.get(), 5_001);
    }

    #[test]
    fn the_last_record_is_found_behind_a_cut_line_and_across_blocks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut chain = Chain::new(Hasher::Sha256);
        let mut text = Vec::new();
        let event = format!("{{\"pad\":\"{}\"}}", "x".repeat(50_000));
        for _ in 0..3 {
            chain.seal_into(event.as_bytes(), &mut text);
        }
        std::fs::write(&path, &text).unwrap();
        let (last, cut) = last_record(&path).unwrap();
        assert!(!cut);
        assert!(last.unwrap().starts_with("{\"seq\":2,"));
        text.extend_from_slice(b"{\"seq\":3,\"prev\":\"ab");
        std::fs::write(&path, &text).unwrap();
        let (last, cut) = last_record(&path).unwrap();
        assert!(cut);
        assert!(last.unwrap().starts_with("{\"seq\":2,"));
    }

    #[test]
    fn rotated_files_are_found_in_order_and_others_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        for name in [
            "audit.jsonl.000002",
            "audit.jsonl.000010",
            "audit.jsonl.000001",
            "audit.jsonl.bak",
            "audit.jsonl.1",
            "other.jsonl.000003",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        let found: Vec<u32> = rotated(&path)
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(found, vec![1, 2, 10]);
        assert_eq!(
            numbered(&path, 7).file_name().unwrap().to_str().unwrap(),
            "audit.jsonl.000007"
        );
    }
}
