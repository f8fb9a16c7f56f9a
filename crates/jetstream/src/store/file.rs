//! `storage: file`: a segmented append-only log, with the index in memory.
//!
//! The store's directory holds block files `00000001.blk`, `00000002.blk`, … Each starts with
//! a 36 byte header and then holds records, appended and never rewritten; a new block starts
//! when the current one would grow past `block_size`. All integers are little-endian; `var` is
//! a LEB128 varint (canonical: the shortest encoding, anything else is corrupt).
//!
//! ```text
//! block header: "SLBK" | version u32 (2) | first_seq u64 | last_time i64 | base_time i64
//!               | crc32c u32
//! record:       tag u32 (kind << 28 | len) | body | crc32c u32
//! message:      time var (zigzag of time - base_time) | subject_len var
//!               | [header_len var, kind 2 only] | subject | data (header block + payload)
//! tombstone:    seq u64
//! ```
//!
//! `len` counts the whole record (below 256 MiB), `crc32c` covers everything before it; for a
//! message it starts from the message's sequence (its 8 bytes, then the record), so a record
//! only checks out at its own sequence. Kinds: 1 a message without headers, 2 one with headers,
//! 3 "delete seq N", 4 "compact below N", 5 "the next sequence is N" (a skip: nothing
//! removed): removals and skips are tombstones, replayed on open. A message's
//! sequence is not written: message sequences in a block are contiguous from its `first_seq`
//! (a compact past the end starts a new block), so it is the header's `first_seq` plus the
//! messages before it in the block. Its time is kept as the difference from the header's
//! `base_time` (the time of the message that started the block, else `last_time`). The
//! header's `first_seq` and `last_time` are the store's next sequence and last time when the
//! block was started, so the newest blocks alone tell where the sequence is even after every
//! block that held messages has been unlinked.
//!
//! A message without headers on a subject shorter than 128 bytes costs 9 bytes and its time's
//! varint (4 or 5 bytes when a block fills within seconds, at most 10): a 16 byte payload on
//! `bench` takes 34 or 35 bytes, where nats-server's record takes 51 (30 bytes of overhead,
//! 34 with headers; here headers add their length's varint).
//!
//! Only leading blocks are unlinked, once nothing in them is live and not before what follows
//! them is on disk: their tombstones can only name sequences in themselves or before, so
//! nothing comes back. Opening scans every block once (in 256 KiB reads, the next block read
//! ahead meanwhile); a torn or corrupt tail is truncated.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::ops::{Range, RangeInclusive};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tracing::warn;

use super::index::{held_matching, is_literal, FilterMemo, Seqs, Subject, GONE};
use super::{record_size, subject_matches, Store, StoreError, StoreState, StoredMsg, SubjectState};

/// The block size when none is given: 8 MiB.
pub const DEFAULT_BLOCK_SIZE: u64 = 8 << 20;

const MAGIC: [u8; 4] = *b"SLBK";
const VERSION: u32 = 2;
const BLOCK_HEADER: usize = 36;
/// A record's first field: its kind in the top bits, its length below.
const TAG: usize = 4;
const CRC_LEN: usize = 4;
const LEN_BITS: u32 = 28;
const LEN_MASK: u32 = (1 << LEN_BITS) - 1;
/// A tombstone's length: tag, sequence, checksum.
const TOMBSTONE: usize = TAG + 8 + CRC_LEN;
/// The shortest message: a one byte time, an empty subject and no data.
const MIN_MSG: usize = TAG + 2 + CRC_LEN;
/// The longest head of a message record: tag, time, subject length and header length.
const MAX_HEAD: usize = TAG + 10 + 3 + 4;
/// Records are below 256 MiB (`len` has 28 bits); offsets in the index are `u32`, so blocks
/// stay well below 4 GiB.
const MAX_RECORD: usize = LEN_MASK as usize;
const MAX_BLOCK_SIZE: u64 = 1 << 30;
/// `append` hands the buffer to the OS early past this, so a large batch does not grow it.
const FLUSH_AT: usize = 1 << 20;
/// A buffer grown past this by one large batch is given back after the flush.
const KEEP_BUF: usize = 4 << 20;

const KIND_MSG: u8 = 1;
const KIND_MSG_HDR: u8 = 2;
const KIND_DELETE: u8 = 3;
const KIND_COMPACT: u8 = 4;
/// "The next sequence is N" (a mirror's gap): moves the sequence, removes nothing.
const KIND_SKIP: u8 = 5;

/// Where and how a [`FileStore`] keeps its blocks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileStoreConfig {
    /// The store's directory (created if missing). Files other than `*.blk` are left alone.
    pub dir: PathBuf,
    /// How large a block file grows before the next one starts (a single larger record gets a
    /// block of its own). Clamped to 1 GiB.
    pub block_size: u64,
}

impl FileStoreConfig {
    /// A store in `dir` with [`DEFAULT_BLOCK_SIZE`] blocks.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            block_size: DEFAULT_BLOCK_SIZE,
        }
    }
}

/// What [`FileStore::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Messages held after recovery.
    pub msgs: u64,
    /// The last sequence recovered (the next append gets the one after it).
    pub last_seq: u64,
    /// Bytes cut from torn or corrupt block tails (and block files dropped for a bad header).
    pub truncated_bytes: u64,
    /// Sequences that a damaged block held or may have held and that are gone: the gap between
    /// where a damaged block's good records end and where the next block starts. A damaged tail
    /// of the last block is counted in `truncated_bytes` only (what it held is unreadable).
    pub lost: Vec<RangeInclusive<u64>>,
    /// Whether a state snapshot spared the scan. Always false: this store always scans.
    pub used_snapshot: bool,
}

/// Where one sequence's record is. `len == 0`: not held.
#[derive(Clone, Copy, Debug)]
struct Slot {
    off: u32,
    /// The record's length in the low [`LEN_BITS`], above them the length of its time and
    /// header length varints (1 to 14 bytes), so the data's length is known without a read.
    len: u32,
    /// Index into [`FileStore::subjects`].
    subj: u32,
}

impl Slot {
    fn held(&self) -> bool {
        self.len != 0
    }

    fn rec_len(&self) -> usize {
        (self.len & LEN_MASK) as usize
    }

    /// The length of the record's head, up to its subject.
    fn head_len(&self, subj_len: usize) -> usize {
        TAG + (self.len >> LEN_BITS) as usize + varint_len(subj_len as u64)
    }

    /// The length of the message's data (header block and payload).
    fn data_len(&self, subj_len: usize) -> usize {
        self.rec_len() - self.head_len(subj_len) - subj_len - CRC_LEN
    }
}

/// One block file and the index of its messages.
#[derive(Debug)]
struct Block {
    id: u64,
    /// The sequence of `slots[0]`: the store's next sequence when the block was started.
    first_seq: u64,
    /// What its messages' times are kept relative to.
    base_time: i64,
    slots: Vec<Slot>,
    /// Slots still held.
    live: u64,
    /// Its length with what is buffered.
    len: u64,
    /// How much of it the OS has; `len - flushed` bytes wait in the write buffer at `buf_at`.
    flushed: u64,
    buf_at: usize,
    file: Option<File>,
    /// Written since the last `sync_data`.
    unsynced: bool,
}

impl Block {
    /// One past the last sequence this block can hold a slot for.
    fn end_seq(&self) -> u64 {
        self.first_seq + self.slots.len() as u64
    }
}

/// How much of a block one read-ahead brings in.
const READ_AHEAD: usize = 128 << 10;
/// A read this far past the last one (or past the end of a chunk) counts as sequential. A
/// reader skipping more (a sparse filter) copies more per message through a chunk than one
/// `pread` of its record costs.
const READ_GAP: u64 = 8 << 10;
/// Records larger than this are read alone.
const READ_ALONE: usize = READ_AHEAD / 4;
/// Chunks kept per store: one per reader walking the store at its own position.
const READ_CHUNKS: usize = 4;

/// Flushed bytes of a block, read ahead for a sequential reader. Flushed bytes never change
/// (records are appended, never rewritten; only recovery truncates, before any read), so a
/// chunk stays valid as long as its block exists.
#[derive(Debug, Default)]
struct Chunk {
    block: u64,
    /// Where in the block file `buf` starts.
    off: u64,
    /// Shared with the messages read from it: a read hands out a slice, not a copy. A chunk
    /// that is replaced stays allocated while such a message lives, which is only as long as
    /// its delivery takes.
    buf: Bytes,
    /// When it was last used, in [`ReadCache::tick`]s.
    used: u64,
}

impl Chunk {
    fn end(&self) -> u64 {
        self.off + self.buf.len() as u64
    }
}

/// Read-ahead for sequential readers (consumers, replays): a record read from a file soon
/// after one just before it in the same block brings in the next [`READ_AHEAD`] bytes, and
/// the reads that follow are served from them (still checked). Random reads go to the file
/// alone. At most [`READ_CHUNKS`] chunks, given back when their block goes.
#[derive(Debug, Default)]
struct ReadCache {
    chunks: Vec<Chunk>,
    /// Where the last few reads that went to the file alone were: (block id, offset).
    recent: [Option<(u64, u64)>; READ_CHUNKS],
    next_recent: usize,
    tick: u64,
}

impl ReadCache {
    /// The bytes of the record at `off` (`len` bytes, all flushed) of block `b`, from a chunk
    /// (read ahead now if this read follows another); `None` when it should be read alone.
    fn record(
        &mut self,
        dir: &Path,
        b: &mut Block,
        off: u64,
        len: usize,
    ) -> Result<Option<Bytes>, StoreError> {
        self.tick += 1;
        let end = off + len as u64;
        let id = b.id;
        let i = match self
            .chunks
            .iter()
            .position(|c| c.block == id && c.off <= off && end <= c.end())
        {
            Some(i) => i,
            None => {
                if len > READ_ALONE {
                    return Ok(None);
                }
                let follows = |at: u64| at < off && off - at <= READ_GAP;
                let i = if let Some(i) = self
                    .chunks
                    .iter()
                    .position(|c| c.block == id && c.off < off && off <= c.end() + READ_GAP)
                {
                    i
                } else if let Some(r) = self
                    .recent
                    .iter()
                    .position(|r| r.is_some_and(|(rb, at)| rb == id && follows(at)))
                {
                    self.recent[r] = None;
                    if self.chunks.len() < READ_CHUNKS {
                        self.chunks.push(Chunk::default());
                        self.chunks.len() - 1
                    } else {
                        let lru = self.chunks.iter().enumerate().min_by_key(|(_, c)| c.used);
                        lru.map_or(0, |(i, _)| i)
                    }
                } else {
                    self.recent[self.next_recent] = Some((id, off));
                    self.next_recent = (self.next_recent + 1) % READ_CHUNKS;
                    return Ok(None);
                };
                let n = (b.flushed - off).min(READ_AHEAD as u64) as usize;
                let c = &mut self.chunks[i];
                // A new buffer each time: the old one may still back messages read from it.
                let mut buf = vec![0u8; n];
                c.buf = Bytes::new();
                c.block = id;
                c.off = off;
                if let Err(e) = read_handle(dir, b)?.read_exact_at(&mut buf, off) {
                    return Err(StoreError::io(
                        format!("reading {}", block_path(dir, id).display()),
                        e,
                    ));
                }
                c.buf = Bytes::from(buf);
                i
            }
        };
        let c = &mut self.chunks[i];
        c.used = self.tick;
        let at = (off - c.off) as usize;
        Ok(Some(c.buf.slice(at..at + len)))
    }

    /// The bytes at `off..off + len` of block `id` if a chunk holds them (no read-ahead).
    fn peek(&self, id: u64, off: u64, len: usize) -> Option<&[u8]> {
        let c = self
            .chunks
            .iter()
            .find(|c| c.block == id && c.off <= off && off + len as u64 <= c.end())?;
        let at = (off - c.off) as usize;
        Some(&c.buf[at..at + len])
    }

    /// Gives back the chunks of blocks below `id` (they were unlinked).
    fn forget_below(&mut self, id: u64) {
        self.chunks.retain(|c| c.block >= id);
        for r in &mut self.recent {
            if r.is_some_and(|(b, _)| b < id) {
                *r = None;
            }
        }
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

/// A stream kept in block files in a directory; see the module doc for the format.
pub struct FileStore {
    dir: PathBuf,
    block_size: u64,
    /// In order of id and of sequence; the last is the one written to.
    blocks: VecDeque<Block>,
    /// Records appended and not yet handed to the OS, of the last few blocks, in order.
    buf: Vec<u8>,
    /// By id; ids of subjects no longer held are reused (`free`).
    subjects: Vec<Subject>,
    by_name: HashMap<Bytes, u32>,
    free: Vec<u32>,
    /// The subject appended last: a run on one subject skips hashing it.
    last_subj: u32,
    msgs: u64,
    bytes: u64,
    /// Nothing below it is held; the lowest sequence held after every public call.
    first: u64,
    /// The time of `timed`, which is `first` after every public call.
    first_time: i64,
    timed: u64,
    last_seq: u64,
    last_time: i64,
    /// Files were created or removed since the directory was last synced.
    dir_unsynced: bool,
    /// Read-ahead for sequential readers.
    cache: ReadCache,
    /// Which subjects match the filters `load_next` was asked for lately.
    memo: FilterMemo,
}

impl fmt::Debug for FileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileStore")
            .field("dir", &self.dir)
            .field("blocks", &self.blocks.len())
            .field("msgs", &self.msgs)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

/// A message record's head, read back.
#[derive(Debug)]
struct MsgHead {
    /// The whole record's length, as its tag says.
    len: usize,
    time: i64,
    /// Where the subject starts: the head's length.
    subj_at: usize,
    subj_len: usize,
    /// 0 for a message without headers.
    hdr_len: usize,
}

impl MsgHead {
    /// Where the data (header block and payload) is in the record.
    fn data(&self) -> Range<usize> {
        self.subj_at + self.subj_len..self.len - CRC_LEN
    }

    /// What the record's [`Slot::len`] is.
    fn slot_len(&self) -> u32 {
        let varints = self.subj_at - TAG - varint_len(self.subj_len as u64);
        self.len as u32 | (varints as u32) << LEN_BITS
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// The kind and length in the tag at the start of `b` (at least [`TAG`] bytes).
fn tag(b: &[u8]) -> (u8, usize) {
    let t = u32_at(b, 0);
    ((t >> LEN_BITS) as u8, (t & LEN_MASK) as usize)
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push(v as u8 | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

/// The varint at `b[*at..]`, moving `at` past it; `None` if cut short or not in its shortest
/// form.
fn get_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let x = *b.get(*at + i)?;
        v |= u64::from(x & 0x7f) << (7 * i);
        if x & 0x80 == 0 {
            // A last byte of 0 makes a longer form of a shorter varint; past 64 bits is junk.
            if (i > 0 && x == 0) || (i == 9 && x > 1) {
                return None;
            }
            *at += i + 1;
            return Some(v);
        }
    }
    None
}

fn zigzag(d: i64) -> u64 {
    ((d << 1) ^ (d >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    (u >> 1) as i64 ^ -((u & 1) as i64)
}

/// The head of the message record at the start of `b` (which holds at least the head; the
/// whole record's length is in its tag) if its kind and lengths hold together. Not checked.
fn msg_head(b: &[u8], base_time: i64) -> Option<MsgHead> {
    if b.len() < TAG {
        return None;
    }
    let (kind, len) = tag(b);
    if (kind != KIND_MSG && kind != KIND_MSG_HDR) || len < MIN_MSG {
        return None;
    }
    let mut at = TAG;
    let dt = get_varint(b, &mut at)?;
    let subj_len = get_varint(b, &mut at)?;
    let hdr_len = if kind == KIND_MSG_HDR {
        get_varint(b, &mut at)?
    } else {
        0
    };
    // What is left for the subject and the data.
    let room = len.checked_sub(at + CRC_LEN)? as u64;
    let fits = subj_len <= u64::from(u16::MAX)
        && subj_len <= room
        && hdr_len <= room - subj_len
        && (kind == KIND_MSG) == (hdr_len == 0);
    fits.then(|| MsgHead {
        len,
        time: base_time.wrapping_add(unzigzag(dt)),
        subj_at: at,
        subj_len: subj_len as usize,
        hdr_len: hdr_len as usize,
    })
}

/// A message's checksum: of its sequence, then of its record up to the checksum.
fn msg_crc(seq: u64, body: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&seq.to_le_bytes()), body)
}

/// The head of `rec` (exactly one record's bytes) if it is a sound record of message `seq` in
/// a block with `base_time`.
fn check_msg(rec: &[u8], base_time: i64, seq: u64) -> Option<MsgHead> {
    let h = msg_head(rec, base_time)?;
    if h.len != rec.len() {
        return None;
    }
    let body = rec.len() - CRC_LEN;
    (msg_crc(seq, &rec[..body]) == u32_at(rec, body)).then_some(h)
}

/// The kind of `rec` (exactly one record's bytes) and the sequence it names, if it is a sound
/// tombstone.
fn check_tombstone(rec: &[u8]) -> Option<(u8, u64)> {
    if rec.len() != TOMBSTONE {
        return None;
    }
    let (kind, len) = tag(rec);
    let body = TOMBSTONE - CRC_LEN;
    let sound = matches!(kind, KIND_DELETE | KIND_COMPACT | KIND_SKIP)
        && len == TOMBSTONE
        && crc32c::crc32c(&rec[..body]) == u32_at(rec, body);
    sound.then(|| (kind, u64_at(rec, TAG)))
}

/// The length of a message record: `dt` its zigzagged time difference, `hdr` the length of
/// the header block at the start of `data_len` bytes of data.
fn msg_len(dt: u64, subj_len: usize, hdr: usize, data_len: usize) -> usize {
    let hdr_var = if hdr > 0 { varint_len(hdr as u64) } else { 0 };
    TAG + varint_len(dt) + varint_len(subj_len as u64) + hdr_var + subj_len + data_len + CRC_LEN
}

/// Appends message `seq`'s record to `buf`, encoded in place; returns its [`Slot::len`].
fn encode_msg(
    buf: &mut Vec<u8>,
    seq: u64,
    dt: u64,
    subject: &[u8],
    hdr: usize,
    data: &[u8],
) -> u32 {
    let start = buf.len();
    let len = msg_len(dt, subject.len(), hdr, data.len());
    buf.reserve(len);
    let kind = if hdr > 0 { KIND_MSG_HDR } else { KIND_MSG };
    buf.extend_from_slice(&(u32::from(kind) << LEN_BITS | len as u32).to_le_bytes());
    put_varint(buf, dt);
    put_varint(buf, subject.len() as u64);
    if hdr > 0 {
        put_varint(buf, hdr as u64);
    }
    let varints = buf.len() - start - TAG - varint_len(subject.len() as u64);
    buf.extend_from_slice(subject);
    buf.extend_from_slice(data);
    let crc = msg_crc(seq, &buf[start..]);
    buf.extend_from_slice(&crc.to_le_bytes());
    debug_assert_eq!(buf.len() - start, len);
    len as u32 | (varints as u32) << LEN_BITS
}

/// Appends a tombstone of `kind` naming `seq` to `buf`.
fn encode_tombstone(buf: &mut Vec<u8>, kind: u8, seq: u64) {
    let start = buf.len();
    buf.extend_from_slice(&(u32::from(kind) << LEN_BITS | TOMBSTONE as u32).to_le_bytes());
    buf.extend_from_slice(&seq.to_le_bytes());
    let crc = crc32c::crc32c(&buf[start..]);
    buf.extend_from_slice(&crc.to_le_bytes());
}

/// A block header read back: `(first_seq, last_time, base_time)`, or `Ok(None)` when torn
/// (short, or zeros, or a bad checksum).
fn block_header(b: &[u8]) -> Result<Option<(u64, i64, i64)>, String> {
    let h = &b[..b.len().min(BLOCK_HEADER)];
    // A file extended by a crash before its data landed reads as zeros.
    if h.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    if h.len() >= 4 && h[..4] != MAGIC {
        return Err("not a block file (bad magic)".into());
    }
    if h.len() < 8 {
        return Ok(None);
    }
    // Before the length and checksum: a block of another version is refused, not dropped.
    let version = u32_at(h, 4);
    if version == 0 {
        return Ok(None);
    }
    if version != VERSION {
        return Err(format!("unknown block version {version}"));
    }
    if h.len() < BLOCK_HEADER {
        return Ok(None);
    }
    let body = BLOCK_HEADER - CRC_LEN;
    if crc32c::crc32c(&h[..body]) != u32_at(h, body) {
        return Ok(None);
    }
    let first_seq = u64_at(h, 8);
    if first_seq == 0 {
        return Err("block starts at sequence 0".into());
    }
    Ok(Some((
        first_seq,
        u64_at(h, 16) as i64,
        u64_at(h, 24) as i64,
    )))
}

/// A block header.
fn encode_block_header(first_seq: u64, last_time: i64, base_time: i64) -> [u8; BLOCK_HEADER] {
    let mut h = [0u8; BLOCK_HEADER];
    h[..4].copy_from_slice(&MAGIC);
    h[4..8].copy_from_slice(&VERSION.to_le_bytes());
    h[8..16].copy_from_slice(&first_seq.to_le_bytes());
    h[16..24].copy_from_slice(&last_time.to_le_bytes());
    h[24..32].copy_from_slice(&base_time.to_le_bytes());
    let body = BLOCK_HEADER - CRC_LEN;
    let crc = crc32c::crc32c(&h[..body]);
    h[body..].copy_from_slice(&crc.to_le_bytes());
    h
}

/// How much of a block file recovery reads at a time: small enough to stay in the CPU's cache
/// while it is checked (a longer record is read whole).
const SCAN_CHUNK: usize = 256 << 10;

/// A block file read front to back, a chunk at a time, for recovery.
struct Scan<'a> {
    file: &'a File,
    buf: &'a mut Vec<u8>,
    /// The file offset of `buf[0]`.
    base: u64,
    /// The cursor and the end of what was read, in `buf`.
    at: usize,
    end: usize,
}

impl Scan<'_> {
    /// The file offset of the cursor.
    fn pos(&self) -> u64 {
        self.base + self.at as u64
    }

    /// What was read from the cursor on: at least `n` bytes, unless the file ends first.
    fn fill(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.end - self.at < n {
            self.buf.copy_within(self.at..self.end, 0);
            self.base += self.at as u64;
            self.end -= self.at;
            self.at = 0;
            if self.buf.len() < n.max(SCAN_CHUNK) {
                self.buf.resize(n.max(SCAN_CHUNK), 0);
            }
            while self.end < n {
                match (&*self.file).read(&mut self.buf[self.end..]) {
                    Ok(0) => break,
                    Ok(k) => self.end += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(&self.buf[self.at..self.end])
    }
}

/// Asks the OS to start reading the file at `path` (best effort): recovery reads it next.
fn prefetch(path: &Path) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Ok(f) = File::open(path) {
        let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::WillNeed);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = path;
}

fn block_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:08}.blk"))
}

/// The block's file for reading, opened once and kept.
fn read_handle<'a>(dir: &Path, b: &'a mut Block) -> Result<&'a File, StoreError> {
    let f = match b.file.take() {
        Some(f) => f,
        None => {
            let path = block_path(dir, b.id);
            OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(|e| StoreError::io(format!("opening {}", path.display()), e))?
        }
    };
    Ok(b.file.insert(f))
}

/// The block's file for writing; created (with the directory, if a delete removed it) for its
/// first write.
fn write_handle<'a>(
    dir: &Path,
    b: &'a mut Block,
    created: &mut bool,
) -> Result<&'a File, StoreError> {
    if b.file.is_some() || b.flushed > 0 {
        return read_handle(dir, b);
    }
    {
        let path = block_path(dir, b.id);
        // create_new: ids only grow, so an existing file here is not ours to overwrite.
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
        };
        let f = match open() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).and_then(|()| open())
            }
            r => r,
        }
        .map_err(|e| StoreError::io(format!("creating {}", path.display()), e))?;
        *created = true;
        Ok(b.file.insert(f))
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(format!("syncing {}", dir.display()), e))
}

impl FileStore {
    /// Opens (creating if needed) the store in `config.dir`, recovering what is there: every
    /// block is read once, in order, its records checked and its tombstones replayed. A torn
    /// or corrupt record ends its block there (the file is truncated); see [`Recovery`].
    pub fn open(config: FileStoreConfig) -> Result<(Self, Recovery), StoreError> {
        let dir = config.dir;
        fs::create_dir_all(&dir)
            .map_err(|e| StoreError::io(format!("creating {}", dir.display()), e))?;
        let mut ids = Vec::new();
        let entries = fs::read_dir(&dir)
            .map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| StoreError::io(format!("listing {}", dir.display()), e))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".blk")) else {
                continue;
            };
            if !stem.is_empty() && stem.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(id) = stem.parse::<u64>() {
                    ids.push(id);
                }
            }
        }
        ids.sort_unstable();

        let mut store = Self {
            dir,
            block_size: config.block_size.clamp(BLOCK_HEADER as u64, MAX_BLOCK_SIZE),
            blocks: VecDeque::new(),
            buf: Vec::new(),
            subjects: Vec::new(),
            by_name: HashMap::new(),
            free: Vec::new(),
            last_subj: 0,
            msgs: 0,
            bytes: 0,
            first: 0,
            first_time: 0,
            timed: 0,
            last_seq: 0,
            last_time: 0,
            dir_unsynced: false,
            cache: ReadCache::default(),
            memo: FilterMemo::default(),
        };
        let mut rec = Recovery::default();
        let mut data = Vec::new();
        for (k, &id) in ids.iter().enumerate() {
            // The disk reads the next block while this one is parsed.
            if let Some(&next) = ids.get(k + 1) {
                prefetch(&block_path(&store.dir, next));
            }
            store.recover_block(id, k == 0, &mut data, &mut rec)?;
        }
        // Replay kept `first` a lower bound and `first_time` the time of `timed`.
        store.fix_first()?;
        if store.dir_unsynced {
            // A removed torn block must stay removed before a new one can take its id.
            sync_dir(&store.dir)?;
            store.dir_unsynced = false;
        }
        store.reclaim()?;
        rec.msgs = store.msgs;
        rec.last_seq = store.last_seq;
        Ok((store, rec))
    }

    /// Reads block `id` into the index (`data` is a reusable buffer), a chunk at a time.
    fn recover_block(
        &mut self,
        id: u64,
        first_file: bool,
        data: &mut Vec<u8>,
        rec: &mut Recovery,
    ) -> Result<(), StoreError> {
        let path = block_path(&self.dir, id);
        let ctx = |what: &str| format!("{what} {}", path.display());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StoreError::io(ctx("opening"), e))?;
        let size = file
            .metadata()
            .map_err(|e| StoreError::io(ctx("reading"), e))?
            .len();
        let mut scan = Scan {
            file: &file,
            buf: data,
            base: 0,
            at: 0,
            end: 0,
        };
        let read = |e| StoreError::io(ctx("reading"), e);
        let header = block_header(scan.fill(BLOCK_HEADER).map_err(read)?)
            .map_err(|why| StoreError::Corrupt(format!("{}: {why}", path.display())))?;
        let Some((first_seq, last_time, base_time)) = header else {
            // Nothing in it can be placed: drop the file; the next block's start tells what
            // was lost.
            warn!(file = %path.display(), bytes = size, "file store: dropping a block with a torn header");
            rec.truncated_bytes += size;
            drop(file);
            fs::remove_file(&path).map_err(|e| StoreError::io(ctx("removing"), e))?;
            self.dir_unsynced = true;
            return Ok(());
        };
        if !first_file {
            if first_seq <= self.last_seq {
                return Err(StoreError::Corrupt(format!(
                    "{} starts at sequence {first_seq}, not after {}",
                    path.display(),
                    self.last_seq
                )));
            }
            if first_seq > self.last_seq + 1 {
                rec.lost.push(self.last_seq + 1..=first_seq - 1);
            }
        }
        self.last_seq = self.last_seq.max(first_seq - 1);
        self.last_time = last_time;
        self.blocks.push_back(Block {
            id,
            first_seq,
            base_time,
            slots: Vec::new(),
            live: 0,
            len: BLOCK_HEADER as u64,
            flushed: BLOCK_HEADER as u64,
            buf_at: 0,
            file: None,
            unsynced: false,
        });

        scan.at = BLOCK_HEADER;
        loop {
            let pos = scan.pos();
            if size - pos < TAG as u64 {
                break;
            }
            let (kind, len) = tag(scan.fill(TAG).map_err(read)?);
            if len < TAG + CRC_LEN || len as u64 > size - pos {
                break;
            }
            let rest = scan.fill(len).map_err(read)?;
            if rest.len() < len {
                break;
            }
            let pos = pos as usize;
            let rec = &rest[..len];
            match kind {
                KIND_MSG | KIND_MSG_HDR => {
                    // Its sequence: contiguous in the block, and after everything before (a
                    // compact past the end starts a new block for the next message).
                    let b = self.blocks.back().expect("pushed above");
                    let seq = b.end_seq();
                    if seq != self.last_seq + 1 || seq >= GONE {
                        break;
                    }
                    let Some(h) = check_msg(rec, b.base_time, seq) else {
                        break;
                    };
                    let subject = &rec[h.subj_at..h.subj_at + h.subj_len];
                    let data_len = h.data().len();
                    self.index(subject, seq, h.time, pos as u32, h.slot_len(), data_len);
                }
                KIND_DELETE | KIND_COMPACT | KIND_SKIP => {
                    let Some((kind, seq)) = check_tombstone(rec) else {
                        break;
                    };
                    if kind == KIND_DELETE {
                        self.kill(seq);
                    } else if kind == KIND_SKIP {
                        self.last_seq = self.last_seq.max(seq.saturating_sub(1));
                    } else {
                        self.kill_below(seq);
                        self.last_seq = self.last_seq.max(seq.saturating_sub(1));
                    }
                }
                kind => {
                    // Written whole (its checksum, as a tombstone's, holds) by a later version.
                    let body = len - CRC_LEN;
                    if crc32c::crc32c(&rec[..body]) == u32_at(rec, body) {
                        return Err(StoreError::Corrupt(format!(
                            "{}: unknown record kind {kind} at {pos}",
                            path.display()
                        )));
                    }
                    break;
                }
            }
            scan.at += len;
        }
        let pos = scan.pos();
        if pos < size {
            let cut = size - pos;
            warn!(file = %path.display(), at = pos, bytes = cut, "file store: truncating a torn or corrupt block tail");
            rec.truncated_bytes += cut;
            file.set_len(pos)
                .and_then(|()| file.sync_all())
                .map_err(|e| StoreError::io(ctx("truncating"), e))?;
        }
        // Only the newest block keeps its handle: older ones are opened when first read.
        if let Some(prev) = self.blocks.iter_mut().rev().nth(1) {
            prev.file = None;
        }
        let b = self.blocks.back_mut().expect("pushed above");
        b.len = pos;
        b.flushed = pos;
        b.file = Some(file);
        Ok(())
    }

    /// Adds a message (already written, at `off` in the last block) to the index.
    /// `len` is its [`Slot::len`], `data_len` the length of its data.
    fn index(&mut self, subject: &[u8], seq: u64, time: i64, off: u32, len: u32, data_len: usize) {
        let cached = self
            .subjects
            .get(self.last_subj as usize)
            .is_some_and(|s| !s.seqs.is_empty() && s.name == subject);
        let known = if cached {
            Some(self.last_subj)
        } else {
            self.by_name.get(subject).copied()
        };
        let subj = match known {
            Some(id) => id,
            None => {
                let name = Bytes::copy_from_slice(subject);
                let id = match self.free.pop() {
                    Some(id) => {
                        self.subjects[id as usize].name = name.clone();
                        id
                    }
                    None => {
                        self.subjects.push(Subject {
                            name: name.clone(),
                            seqs: Seqs::default(),
                        });
                        (self.subjects.len() - 1) as u32
                    }
                };
                self.memo.named(id, subject);
                self.by_name.insert(name, id);
                id
            }
        };
        self.subjects[subj as usize].seqs.push(seq);
        self.last_subj = subj;
        let b = self.blocks.back_mut().expect("the caller made one");
        b.slots.push(Slot { off, len, subj });
        b.live += 1;
        if self.msgs == 0 {
            self.first = seq;
            self.first_time = time;
            self.timed = seq;
        }
        self.msgs += 1;
        self.bytes += record_size(subject.len(), data_len);
        self.last_seq = seq;
        self.last_time = time;
    }

    /// The block and slot of `seq`, if a block has a slot for it.
    fn find(&self, seq: u64) -> Option<(usize, usize)> {
        let i = self.blocks.partition_point(|b| b.end_seq() <= seq);
        let b = self.blocks.get(i)?;
        (b.first_seq <= seq).then(|| (i, (seq - b.first_seq) as usize))
    }

    /// The held slot of `seq`.
    fn live(&self, seq: u64) -> Option<(usize, usize)> {
        self.find(seq)
            .filter(|&(bi, si)| self.blocks[bi].slots[si].held())
    }

    /// The lowest sequence held `>= from`.
    fn next_live(&self, from: u64) -> Option<u64> {
        let i = self.blocks.partition_point(|b| b.end_seq() <= from);
        self.blocks.range(i..).filter(|b| b.live > 0).find_map(|b| {
            let start = from.saturating_sub(b.first_seq) as usize;
            b.slots[start..]
                .iter()
                .position(Slot::held)
                .map(|k| b.first_seq + (start + k) as u64)
        })
    }

    /// The lowest sequence held `>= seq` on a subject matching `filter`: from the subject's
    /// sequences for a literal; for wildcards by a scan of the slots while that is cheaper than
    /// asking every subject held, then from the subjects that match.
    fn next_match(&mut self, seq: u64, filter: &[u8]) -> Option<u64> {
        if is_literal(filter) {
            let id = *self.by_name.get(filter)?;
            return self.subjects[id as usize].seqs.from(seq).next();
        }
        let subjects = &self.subjects;
        let m = held_matching(&mut self.memo, subjects, filter);
        if m.is_empty() {
            return None;
        }
        // A scan of the slots while that is cheaper than asking each matching subject.
        let mut budget = (m.len() * 8).max(16);
        let mut from = seq;
        let i = self.blocks.partition_point(|b| b.end_seq() <= seq);
        'scan: for b in self.blocks.range(i..) {
            if b.live == 0 {
                from = from.max(b.end_seq());
                continue;
            }
            let start = seq.saturating_sub(b.first_seq) as usize;
            for (k, s) in b.slots[start..].iter().enumerate() {
                let q = b.first_seq + (start + k) as u64;
                if budget == 0 {
                    from = q;
                    break 'scan;
                }
                budget -= 1;
                if s.held() && m.matches(s.subj) {
                    return Some(q);
                }
            }
            from = from.max(b.end_seq());
        }
        if budget > 0 {
            return None;
        }
        m.ids()
            .filter_map(|id| subjects[id as usize].seqs.from(from).next())
            .min()
    }

    /// Drops slot `si` of block `bi` from the index (not from disk); false if not held.
    fn kill_at(&mut self, bi: usize, si: usize) -> bool {
        let b = &mut self.blocks[bi];
        let slot = b.slots[si];
        if !slot.held() {
            return false;
        }
        let seq = b.first_seq + si as u64;
        b.slots[si].len = 0;
        b.live -= 1;
        let s = &mut self.subjects[slot.subj as usize];
        let data_len = slot.data_len(s.name.len());
        self.msgs -= 1;
        self.bytes -= record_size(s.name.len(), data_len);
        s.seqs.remove(seq);
        if s.seqs.is_empty() {
            let name = std::mem::take(&mut s.name);
            self.by_name.remove(&name);
            self.free.push(slot.subj);
        }
        true
    }

    fn kill(&mut self, seq: u64) -> bool {
        self.find(seq).is_some_and(|(bi, si)| self.kill_at(bi, si))
    }

    /// Drops every held sequence below `seq` from the index; how many.
    fn kill_below(&mut self, seq: u64) -> u64 {
        let mut n = 0;
        let mut i = self.blocks.partition_point(|b| b.end_seq() <= self.first);
        while i < self.blocks.len() && self.blocks[i].first_seq < seq {
            let b = &self.blocks[i];
            if b.live > 0 {
                let lo = self.first.saturating_sub(b.first_seq) as usize;
                let hi = (seq - b.first_seq).min(b.slots.len() as u64) as usize;
                for si in lo..hi {
                    n += u64::from(self.kill_at(i, si));
                }
            }
            i += 1;
        }
        self.first = self.first.max(seq);
        n
    }

    /// Makes `first` (a lower bound after removals) the lowest sequence held again, and
    /// `first_time` its time.
    fn fix_first(&mut self) -> Result<(), StoreError> {
        if self.msgs == 0 {
            self.first = self.last_seq + 1;
            self.first_time = 0;
            self.timed = 0;
            return Ok(());
        }
        if self.live(self.first).is_none() {
            let Some(seq) = self.next_live(self.first) else {
                return Err(StoreError::Corrupt("index lost its first message".into()));
            };
            self.first = seq;
        }
        if self.timed != self.first {
            self.first_time = self.read_time(self.first)?;
            self.timed = self.first;
        }
        Ok(())
    }

    /// The time of held message `seq`, from its record's fixed header only.
    fn read_time(&mut self, seq: u64) -> Result<i64, StoreError> {
        let Some((bi, si)) = self.live(seq) else {
            return Ok(0);
        };
        let b = &mut self.blocks[bi];
        let slot = b.slots[si];
        let off = u64::from(slot.off);
        let n = slot.head_len(self.subjects[slot.subj as usize].name.len());
        let mut head = [0u8; MAX_HEAD];
        let head = &mut head[..n];
        if off >= b.flushed {
            let at = b.buf_at + (off - b.flushed) as usize;
            head.copy_from_slice(&self.buf[at..at + n]);
        } else if let Some(h) = self.cache.peek(b.id, off, n) {
            head.copy_from_slice(h);
        } else {
            read_handle(&self.dir, b)?
                .read_exact_at(head, off)
                .map_err(|e| {
                    StoreError::io(
                        format!("reading {}", block_path(&self.dir, b.id).display()),
                        e,
                    )
                })?;
        }
        match msg_head(head, b.base_time) {
            Some(h) if h.len == slot.rec_len() && h.subj_at == n => Ok(h.time),
            _ => Err(self.corrupt(bi, slot.off)),
        }
    }

    fn corrupt(&self, bi: usize, off: u32) -> StoreError {
        StoreError::Corrupt(format!(
            "{}: bad record at {off}",
            block_path(&self.dir, self.blocks[bi].id).display()
        ))
    }

    /// Held message `seq`, from the write buffer or, checked, from its block file.
    fn read(&mut self, seq: u64) -> Result<Option<StoredMsg>, StoreError> {
        let Some((bi, si)) = self.live(seq) else {
            return Ok(None);
        };
        let b = &mut self.blocks[bi];
        let slot = b.slots[si];
        let base_time = b.base_time;
        let subject = self.subjects[slot.subj as usize].name.clone();
        let len = slot.rec_len();
        let off = u64::from(slot.off);
        let (h, data) = if off >= b.flushed {
            let at = b.buf_at + (off - b.flushed) as usize;
            let rec = &self.buf[at..at + len];
            let Some(h) = msg_head(rec, base_time) else {
                return Err(self.corrupt(bi, slot.off));
            };
            let data = Bytes::copy_from_slice(&rec[h.data()]);
            (h, data)
        } else if let Some(rec) = self.cache.record(&self.dir, b, off, len)? {
            let checked = check_msg(&rec, base_time, seq).map(|h| (rec.slice(h.data()), h));
            let Some((data, h)) = checked else {
                return Err(self.corrupt(bi, slot.off));
            };
            (h, data)
        } else {
            let mut rec = vec![0u8; len];
            read_handle(&self.dir, b)?
                .read_exact_at(&mut rec, off)
                .map_err(|e| {
                    StoreError::io(
                        format!("reading {}", block_path(&self.dir, b.id).display()),
                        e,
                    )
                })?;
            let Some(h) = check_msg(&rec, base_time, seq) else {
                return Err(self.corrupt(bi, slot.off));
            };
            let data = h.data();
            (h, Bytes::from(rec).slice(data))
        };
        if h.len != len || h.subj_len != subject.len() {
            return Err(self.corrupt(bi, slot.off));
        }
        Ok(Some(StoredMsg {
            seq,
            time: h.time,
            subject,
            header_len: h.hdr_len,
            data,
        }))
    }

    /// Makes the last block one that a record of `len` bytes (a message: its sequence and
    /// time) goes into, starting a new block when it would grow past `block_size` or when the
    /// message would not be the next sequence of the current one.
    fn room(&mut self, len: usize, msg: Option<(u64, i64)>) {
        let roll = match self.blocks.back() {
            None => true,
            Some(b) => {
                (b.len > BLOCK_HEADER as u64 && b.len + len as u64 > self.block_size)
                    || msg.is_some_and(|(s, _)| s != b.end_seq())
            }
        };
        if roll {
            let id = self.blocks.back().map_or(1, |b| b.id + 1);
            let first_seq = self.last_seq + 1;
            // The time of the message that starts it, so that the times of those that follow
            // it soon are short.
            let base_time = msg.map_or(self.last_time, |(_, t)| t);
            let buf_at = self.buf.len();
            self.buf
                .extend_from_slice(&encode_block_header(first_seq, self.last_time, base_time));
            self.blocks.push_back(Block {
                id,
                first_seq,
                base_time,
                slots: Vec::new(),
                live: 0,
                len: BLOCK_HEADER as u64,
                flushed: 0,
                buf_at,
                file: None,
                unsynced: false,
            });
        }
        let b = self.blocks.back_mut().expect("made above");
        if b.len == b.flushed {
            b.buf_at = self.buf.len();
        }
    }

    /// Writes a tombstone into the current block (buffered, like an append).
    fn tombstone(&mut self, kind: u8, seq: u64) {
        self.room(TOMBSTONE, None);
        encode_tombstone(&mut self.buf, kind, seq);
        let b = self.blocks.back_mut().expect("room made one");
        b.len += TOMBSTONE as u64;
    }

    /// `sync_data` of every block written since the last sync, and the directory if files came
    /// or went.
    fn sync_files(&mut self) -> Result<(), StoreError> {
        for b in self.blocks.iter_mut().filter(|b| b.unsynced) {
            if let Some(f) = &b.file {
                f.sync_data().map_err(|e| {
                    StoreError::io(
                        format!("syncing {}", block_path(&self.dir, b.id).display()),
                        e,
                    )
                })?;
            }
            b.unsynced = false;
        }
        if self.dir_unsynced {
            sync_dir(&self.dir)?;
            self.dir_unsynced = false;
        }
        Ok(())
    }

    /// Unlinks leading blocks that hold nothing (never the last: it carries the sequence).
    fn reclaim(&mut self) -> Result<(), StoreError> {
        let dead = |blocks: &VecDeque<Block>| blocks.len() > 1 && blocks[0].live == 0;
        if !dead(&self.blocks) {
            return Ok(());
        }
        // What follows a dead block (its tombstones, the next header) must be durable before
        // the block goes, or a power loss could bring back a store that forgot its sequence.
        // Once per block, so cheap.
        self.sync_files()?;
        while dead(&self.blocks) {
            let id = self.blocks[0].id;
            self.blocks[0].file = None;
            let path = block_path(&self.dir, id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io(format!("removing {}", path.display()), e)),
            }
            self.blocks.pop_front();
            self.dir_unsynced = true;
        }
        if let Some(b) = self.blocks.front() {
            self.cache.forget_below(b.id);
        }
        Ok(())
    }
}

impl Store for FileStore {
    fn append(
        &mut self,
        subject: &[u8],
        header_len: usize,
        data: &[u8],
        time: i64,
    ) -> Result<u64, StoreError> {
        if subject.len() > usize::from(u16::MAX) || header_len > data.len() {
            return Err(StoreError::TooLarge);
        }
        // The length it takes in the current block; in a new one it can only be shorter.
        let dt = |base: i64| zigzag(time.wrapping_sub(base));
        let base = self.blocks.back().map_or(time, |b| b.base_time);
        let len = msg_len(dt(base), subject.len(), header_len, data.len());
        if len > MAX_RECORD {
            return Err(StoreError::TooLarge);
        }
        let seq = self.last_seq + 1;
        if seq >= GONE {
            // Only a compact that far gets here; the index marks removals with the top bit.
            return Err(StoreError::io(
                "appending",
                io::Error::new(io::ErrorKind::Unsupported, "sequences past 2^63"),
            ));
        }
        self.room(len, Some((seq, time)));
        let b = self.blocks.back_mut().expect("room made one");
        let off = b.len;
        let dt = dt(b.base_time);
        let slot_len = encode_msg(&mut self.buf, seq, dt, subject, header_len, data);
        b.len += u64::from(slot_len & LEN_MASK);
        self.index(subject, seq, time, off as u32, slot_len, data.len());
        if self.buf.len() > FLUSH_AT {
            self.flush()?;
        }
        Ok(seq)
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        // The blocks with buffered bytes are the last few; one write each, at its offset (so a
        // failed flush can simply be retried).
        let from = self
            .blocks
            .iter()
            .rposition(|b| b.len == b.flushed)
            .map_or(0, |i| i + 1);
        let mut created = false;
        let mut result = Ok(());
        for b in self.blocks.range_mut(from..) {
            let n = (b.len - b.flushed) as usize;
            let at = b.buf_at;
            let flushed = b.flushed;
            let id = b.id;
            let written = write_handle(&self.dir, b, &mut created).and_then(|f| {
                f.write_all_at(&self.buf[at..at + n], flushed).map_err(|e| {
                    StoreError::io(
                        format!("writing {}", block_path(&self.dir, id).display()),
                        e,
                    )
                })
            });
            if let Err(e) = written {
                result = Err(e);
                break;
            }
            b.flushed = b.len;
            b.unsynced = true;
        }
        self.dir_unsynced |= created;
        result?;
        self.buf.clear();
        if self.buf.capacity() > KEEP_BUF {
            self.buf = Vec::new();
        }
        self.reclaim()
    }

    fn sync(&mut self) -> Result<(), StoreError> {
        self.flush()?;
        self.sync_files()
    }

    fn load(&mut self, seq: u64) -> Result<Option<StoredMsg>, StoreError> {
        self.read(seq)
    }

    fn load_next(
        &mut self,
        seq: u64,
        filter: Option<&[u8]>,
    ) -> Result<Option<StoredMsg>, StoreError> {
        let seq = seq.max(self.first);
        let found = match filter {
            None => self.next_live(seq),
            Some(f) => self.next_match(seq, f),
        };
        match found {
            Some(s) => self.read(s),
            None => Ok(None),
        }
    }

    fn load_last(&mut self, filter: &[u8]) -> Result<Option<StoredMsg>, StoreError> {
        let last = if is_literal(filter) {
            self.by_name
                .get(filter)
                .and_then(|&id| self.subjects[id as usize].seqs.last())
        } else {
            self.by_name
                .iter()
                .filter(|(s, _)| subject_matches(filter, s))
                .filter_map(|(_, &id)| self.subjects[id as usize].seqs.last())
                .max()
        };
        match last {
            Some(s) => self.read(s),
            None => Ok(None),
        }
    }

    fn remove(&mut self, seq: u64) -> Result<bool, StoreError> {
        if !self.kill(seq) {
            return Ok(false);
        }
        self.tombstone(KIND_DELETE, seq);
        self.fix_first()?;
        Ok(true)
    }

    fn compact(&mut self, seq: u64) -> Result<u64, StoreError> {
        let n = if self.msgs > 0 {
            self.kill_below(seq)
        } else {
            0
        };
        let moves = seq > self.last_seq + 1;
        if n > 0 || moves {
            // Written before last_seq moves: a block started for the tombstone begins where the
            // sequence was, so the next block's start shows no gap.
            self.tombstone(KIND_COMPACT, seq);
        }
        if moves {
            self.last_seq = seq - 1;
        }
        self.fix_first()?;
        Ok(n)
    }

    fn skip_to(&mut self, seq: u64) -> Result<(), StoreError> {
        if seq <= self.last_seq + 1 {
            return Ok(());
        }
        if seq >= GONE {
            return Err(StoreError::io(
                "skipping",
                io::Error::new(io::ErrorKind::Unsupported, "sequences past 2^63"),
            ));
        }
        // Written before last_seq moves (as a compact's), so the block it lands in still
        // starts where the sequence was; the next append starts a block at `seq`.
        self.tombstone(KIND_SKIP, seq);
        self.last_seq = seq - 1;
        Ok(())
    }

    fn purge_subject(
        &mut self,
        filter: &[u8],
        up_to: Option<u64>,
        keep: Option<u64>,
    ) -> Result<u64, StoreError> {
        let mut doomed: Vec<u64> = self
            .by_name
            .iter()
            .filter(|(s, _)| subject_matches(filter, s))
            .flat_map(|(_, &id)| self.subjects[id as usize].seqs.iter())
            .filter(|s| up_to.is_none_or(|u| *s < u))
            .collect();
        doomed.sort_unstable();
        if let Some(keep) = keep {
            let n = doomed.len().saturating_sub(keep as usize);
            doomed.truncate(n);
        }
        for &s in &doomed {
            self.kill(s);
            self.tombstone(KIND_DELETE, s);
        }
        self.fix_first()?;
        Ok(doomed.len() as u64)
    }

    fn state(&self) -> StoreState {
        let first_seq = if self.msgs == 0 {
            self.last_seq + 1
        } else {
            self.first
        };
        StoreState {
            msgs: self.msgs,
            bytes: self.bytes,
            first_seq,
            first_time: self.first_time,
            last_seq: self.last_seq,
            last_time: self.last_time,
            num_subjects: self.by_name.len() as u64,
            num_deleted: if self.msgs == 0 {
                0
            } else {
                self.last_seq - first_seq + 1 - self.msgs
            },
        }
    }

    fn subject_state(&self, subject: &[u8]) -> Option<SubjectState> {
        let seqs = &self.subjects[*self.by_name.get(subject)? as usize].seqs;
        Some(SubjectState {
            msgs: seqs.len() as u64,
            first: seqs.first()?,
            last: seqs.last()?,
        })
    }

    fn subjects(&self, filter: &[u8]) -> Vec<(Bytes, SubjectState)> {
        self.by_name
            .iter()
            .filter(|(s, _)| subject_matches(filter, s))
            .filter_map(|(s, &id)| {
                let seqs = &self.subjects[id as usize].seqs;
                Some((
                    s.clone(),
                    SubjectState {
                        msgs: seqs.len() as u64,
                        first: seqs.first()?,
                        last: seqs.last()?,
                    },
                ))
            })
            .collect()
    }

    fn num_pending(&mut self, seq: u64, filters: &[&[u8]]) -> u64 {
        if !filters.is_empty() {
            return self
                .by_name
                .iter()
                .filter(|(s, _)| filters.iter().any(|f| subject_matches(f, s)))
                .map(|(_, &id)| self.subjects[id as usize].seqs.count_from(seq) as u64)
                .sum();
        }
        if seq <= self.first {
            return self.msgs;
        }
        // Whole blocks by their live counts, the one holding `seq` slot by slot.
        let i = self.blocks.partition_point(|b| b.end_seq() <= seq);
        self.blocks
            .range(i..)
            .map(|b| {
                if b.first_seq >= seq {
                    b.live
                } else {
                    let start = (seq - b.first_seq) as usize;
                    b.slots[start..].iter().filter(|s| s.held()).count() as u64
                }
            })
            .sum()
    }

    fn delete(&mut self) -> Result<(), StoreError> {
        // Afterwards an empty store, as a new one would be (its directory made again if written).
        self.blocks.clear();
        // Block ids start again at 1, subject ids at 0.
        self.cache.clear();
        self.memo = FilterMemo::default();
        self.buf = Vec::new();
        self.subjects.clear();
        self.by_name.clear();
        self.free.clear();
        self.msgs = 0;
        self.bytes = 0;
        self.first = 1;
        self.first_time = 0;
        self.timed = 0;
        self.last_seq = 0;
        self.last_time = 0;
        self.dir_unsynced = false;
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io(
                format!("removing {}", self.dir.display()),
                e,
            )),
        }
    }
}

impl Drop for FileStore {
    /// Hands what is buffered to the OS, so a clean drop loses nothing (best effort: errors
    /// cannot be reported here).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::{self, Opener};
    use crate::store::MemoryStore;
    use proptest::prelude::*;

    /// A directory under the system's temporary one, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> Self {
            let p = std::env::temp_dir().join(format!("starling-fs-{:016x}", fastrand::u64(..)));
            fs::create_dir_all(&p).unwrap();
            Self(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn open(dir: &Path, block_size: u64) -> (FileStore, Recovery) {
        FileStore::open(FileStoreConfig {
            dir: dir.to_path_buf(),
            block_size,
        })
        .unwrap()
    }

    /// The ids of the block files in `dir`.
    fn blk_files(dir: &Path) -> Vec<u64> {
        let mut ids: Vec<u64> = fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".blk")?.parse().ok()
            })
            .collect();
        ids.sort_unstable();
        ids
    }

    struct Harness {
        root: TempDir,
        block_size: u64,
        n: u32,
        dir: PathBuf,
    }

    impl Harness {
        fn new(block_size: u64) -> Self {
            let root = TempDir::new();
            let dir = root.0.clone();
            Self {
                root,
                block_size,
                n: 0,
                dir,
            }
        }
    }

    impl Opener for Harness {
        fn fresh(&mut self) -> Box<dyn Store> {
            self.n += 1;
            self.dir = self.root.0.join(self.n.to_string());
            Box::new(open(&self.dir, self.block_size).0)
        }

        fn reopen(&mut self, mut store: Box<dyn Store>) -> Box<dyn Store> {
            store.flush().unwrap();
            drop(store);
            let (s, rec) = open(&self.dir, self.block_size);
            assert_eq!((rec.truncated_bytes, rec.lost.len()), (0, 0), "{rec:?}");
            Box::new(s)
        }
    }

    #[test]
    fn the_file_store_conforms() {
        // 48 bytes: one message a block (the shortest record is 12 bytes after a 36 byte
        // header), so every check also rolls and unlinks blocks.
        for block_size in [DEFAULT_BLOCK_SIZE, 4096, 48] {
            let mut h = Harness::new(block_size);
            conformance::run(&mut h);
            // Each check ends with delete(): nothing is left behind.
            for n in 1..=h.n {
                assert!(!h.root.0.join(n.to_string()).exists());
            }
        }
    }

    fn subj(i: u64) -> String {
        format!("t.{}", i % 3)
    }

    fn payload(i: u64) -> Vec<u8> {
        format!("payload-{i:04}").into_bytes()
    }

    /// The length on disk of a record from `subj` and `payload` (its time a few nanoseconds
    /// from its block's first: one byte).
    const REC: u64 = (TAG + 1 + 1 + 3 + 12 + CRC_LEN) as u64;

    fn fill(dir: &Path, block_size: u64) {
        let (mut s, _) = open(dir, block_size);
        for i in 1..=50 {
            assert_eq!(
                s.append(subj(i).as_bytes(), 0, &payload(i), i as i64)
                    .unwrap(),
                i
            );
        }
        s.flush().unwrap();
        for i in 51..=60 {
            s.append(subj(i).as_bytes(), 0, &payload(i), i as i64)
                .unwrap();
        }
        s.flush().unwrap();
    }

    fn copy_dir(from: &Path, to: &Path) {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }

    /// Flips a bit in the payload of message `seq` (written by [`fill`]).
    fn corrupt(dir: &Path, seq: u64) {
        let needle = payload(seq);
        for id in blk_files(dir) {
            let path = block_path(dir, id);
            let mut bytes = fs::read(&path).unwrap();
            if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
                bytes[at + 3] ^= 0x40;
                fs::write(&path, bytes).unwrap();
                return;
            }
        }
        panic!("message {seq} not found");
    }

    fn assert_intact(s: &mut FileStore, seqs: impl IntoIterator<Item = u64>) {
        for i in seqs {
            let m = s.load(i).unwrap().unwrap_or_else(|| panic!("{i} lost"));
            assert_eq!((m.seq, m.time, m.subject_str()), (i, i as i64, &*subj(i)));
            assert_eq!(m.payload(), payload(i));
        }
    }

    #[test]
    fn skipped_sequences_are_not_reported_lost() {
        // A skip starts the next block past a gap; recovery must not take that for damage.
        let dir = TempDir::new();
        let (mut s, _) = open(&dir.0, 256);
        s.append(b"a", 0, b"1", 1).unwrap();
        s.skip_to(10).unwrap();
        assert_eq!(s.append(b"a", 0, b"10", 2).unwrap(), 10);
        s.skip_to(20).unwrap();
        s.sync().unwrap();
        drop(s);
        let (mut s, rec) = open(&dir.0, 256);
        assert!(rec.lost.is_empty(), "{rec:?}");
        assert_eq!((rec.msgs, rec.last_seq), (2, 19));
        assert_eq!(s.append(b"a", 0, b"20", 3).unwrap(), 20);
        drop(s);
        let (_, rec) = open(&dir.0, 256);
        assert!(rec.lost.is_empty(), "{rec:?}");
        assert_eq!((rec.msgs, rec.last_seq), (3, 20));
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_truncated_and_appends_continue() {
        let t = TempDir::new();
        let a = t.0.join("a");
        fill(&a, DEFAULT_BLOCK_SIZE);
        let b = t.0.join("b");
        copy_dir(&a, &b);

        // A torn write: the last record lacks its last 5 bytes.
        let blk = block_path(&a, 1);
        let len = fs::metadata(&blk).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&blk)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let (mut s, rec) = open(&a, DEFAULT_BLOCK_SIZE);
        assert_eq!((rec.msgs, rec.last_seq), (59, 59));
        assert_eq!(rec.truncated_bytes, REC - 5);
        assert!(rec.lost.is_empty());
        assert_intact(&mut s, 1..=59);
        assert_eq!(s.load(60).unwrap(), None);
        assert_eq!(s.append(b"t.0", 0, b"after", 61).unwrap(), 60);
        drop(s);
        let (mut s, rec) = open(&a, DEFAULT_BLOCK_SIZE);
        assert_eq!((rec.msgs, rec.truncated_bytes), (60, 0));
        assert_intact(&mut s, 1..=59);
        assert_eq!(s.load(60).unwrap().unwrap().payload(), b"after");

        // One flipped bit in message 55: it and everything after it in the block go.
        corrupt(&b, 55);
        let (mut s, rec) = open(&b, DEFAULT_BLOCK_SIZE);
        assert_eq!((rec.msgs, rec.last_seq), (54, 54));
        assert_eq!(rec.truncated_bytes, 6 * REC);
        assert_intact(&mut s, 1..=54);
        assert_eq!(s.load(55).unwrap(), None);
        assert_eq!(s.append(b"t.0", 0, b"after", 61).unwrap(), 55);
        assert_eq!(s.state().last_seq, 55);
    }

    #[test]
    fn a_corrupt_record_in_an_older_block_is_reported_lost() {
        let t = TempDir::new();
        // 256 bytes: 4 records a block, block 2 holds 5..=8.
        let block_size = BLOCK_HEADER as u64 + 4 * REC;
        fill(&t.0, block_size);
        assert_eq!(blk_files(&t.0).len(), 15);
        corrupt(&t.0, 6);
        let (mut s, rec) = open(&t.0, block_size);
        assert_eq!(rec.lost, vec![6..=8]);
        assert_eq!(rec.truncated_bytes, 3 * REC);
        assert_eq!((rec.msgs, rec.last_seq), (57, 60));
        assert_intact(&mut s, (1..=5).chain(9..=60));
        for i in 6..=8 {
            assert_eq!(s.load(i).unwrap(), None);
        }
        let st = s.state();
        assert_eq!((st.first_seq, st.num_deleted), (1, 3));
        assert_eq!(s.append(b"t.0", 0, b"after", 61).unwrap(), 61);
        drop(s);
        let (mut s, rec) = open(&t.0, block_size);
        assert_eq!((rec.msgs, rec.truncated_bytes), (58, 0));
        assert_intact(&mut s, 9..=60);
    }

    #[test]
    fn a_block_with_a_torn_header_is_dropped() {
        let t = TempDir::new();
        let block_size = BLOCK_HEADER as u64 + 4 * REC;
        let (d, a) = (t.0.join("d"), t.0.join("a"));
        fill(&d, block_size);
        copy_dir(&d, &a);

        // The newest block (57..=60) was being created: only part of its header landed.
        OpenOptions::new()
            .write(true)
            .open(block_path(&d, 15))
            .unwrap()
            .set_len(10)
            .unwrap();
        let (mut s, rec) = open(&d, block_size);
        assert_eq!((rec.msgs, rec.last_seq, rec.truncated_bytes), (56, 56, 10));
        assert!(rec.lost.is_empty());
        assert_intact(&mut s, 1..=56);
        assert_eq!(s.append(b"t.0", 0, b"after", 61).unwrap(), 57);
        s.flush().unwrap();
        assert_eq!(blk_files(&d), (1..=15).collect::<Vec<_>>());
        drop(s);
        let (mut s, rec) = open(&d, block_size);
        assert_eq!((rec.msgs, rec.last_seq, rec.truncated_bytes), (57, 57, 0));
        assert_eq!(s.load(57).unwrap().unwrap().payload(), b"after");

        // A damaged header in an older block: its messages (9..=12) are lost, the rest stays.
        let path = block_path(&a, 3);
        let mut bytes = fs::read(&path).unwrap();
        bytes[9] ^= 1;
        fs::write(&path, bytes).unwrap();
        let (mut s, rec) = open(&a, block_size);
        assert_eq!(rec.lost, vec![9..=12]);
        assert_eq!((rec.msgs, rec.last_seq), (56, 60));
        assert_intact(&mut s, (1..=8).chain(13..=60));
        assert!(!path.exists());
    }

    #[test]
    fn blocks_roll_over_and_dead_leading_blocks_are_unlinked() {
        let t = TempDir::new();
        let dir = &t.0;
        let (mut s, _) = open(dir, 4096);
        let data = [7u8; 121];
        for i in 1..=200u64 {
            s.append(b"b", 0, &data, i as i64).unwrap();
        }
        s.flush().unwrap();
        // 132 byte records: 30 to a 4 KiB block.
        assert_eq!(s.blocks[0].len, (BLOCK_HEADER + 30 * 132) as u64);
        assert_eq!(blk_files(dir), (1..=7).collect::<Vec<_>>());
        for f in blk_files(dir) {
            assert!(fs::metadata(block_path(dir, f)).unwrap().len() <= 4096);
        }
        let starts: Vec<u64> = s.blocks.iter().map(|b| b.first_seq).collect();
        assert_eq!(starts, vec![1, 31, 61, 91, 121, 151, 181]);

        // Compacting into block 3 unlinks blocks 1 and 2.
        assert_eq!(s.compact(61).unwrap(), 60);
        s.flush().unwrap();
        assert_eq!(blk_files(dir), (3..=7).collect::<Vec<_>>());
        // Emptying block 3 one by one unlinks it too; an empty block 5 stays (block 4 is live,
        // and block 5's tombstones are needed until it goes).
        for q in 61..=90 {
            assert!(s.remove(q).unwrap());
        }
        for q in 121..=150 {
            assert!(s.remove(q).unwrap());
        }
        s.flush().unwrap();
        // 61 tombstones (16 bytes each) fit in block 7.
        assert_eq!(blk_files(dir), (4..=7).collect::<Vec<_>>());
        let before = s.state();
        assert_eq!(
            (before.msgs, before.first_seq, before.num_deleted),
            (80, 91, 30)
        );
        drop(s);

        let (mut s, rec) = open(dir, 4096);
        assert_eq!((rec.msgs, rec.last_seq, rec.truncated_bytes), (80, 200, 0));
        assert_eq!(s.state(), before);
        assert_eq!(s.load(91).unwrap().unwrap().data, &data[..]);
        assert_eq!(s.load(130).unwrap(), None);
        assert_eq!(s.num_pending(100, &[]), 71);
        // Removing block 4's messages unlinks it and the empty block 5 behind it; their
        // tombstones roll the log into block 8.
        for q in 91..=120 {
            assert!(s.remove(q).unwrap());
        }
        s.flush().unwrap();
        assert_eq!(blk_files(dir), vec![6, 7, 8]);

        // A compact past the end keeps only the last block, then the next append's block.
        assert_eq!(s.compact(1000).unwrap(), 50);
        s.flush().unwrap();
        assert_eq!(blk_files(dir), vec![8]);
        assert_eq!(s.append(b"b", 0, b"x", 1000).unwrap(), 1000);
        s.flush().unwrap();
        assert_eq!(blk_files(dir), vec![9]);
        drop(s);
        let (mut s, rec) = open(dir, 4096);
        assert_eq!((rec.msgs, rec.last_seq), (1, 1000));
        let st = s.state();
        assert_eq!(
            (st.first_seq, st.first_time, st.last_time),
            (1000, 1000, 1000)
        );
        assert_eq!(s.append(b"b", 0, b"y", 1001).unwrap(), 1001);
    }

    #[test]
    fn an_empty_store_keeps_its_sequence_when_all_blocks_that_held_messages_go() {
        let t = TempDir::new();
        // 48 bytes: each record gets a block of its own, tombstones too.
        let (mut s, _) = open(&t.0, 48);
        for i in 1..=5u64 {
            s.append(b"a", 0, b"x", i as i64).unwrap();
        }
        for q in 1..=5 {
            s.remove(q).unwrap();
        }
        s.flush().unwrap();
        assert_eq!(blk_files(&t.0).len(), 1);
        drop(s);
        let (mut s, rec) = open(&t.0, 48);
        assert_eq!((rec.msgs, rec.last_seq), (0, 5));
        assert_eq!(s.state().last_time, 5);
        assert_eq!(s.append(b"a", 0, b"x", 6).unwrap(), 6);
    }

    #[test]
    fn a_drop_without_flush_persists_and_sync_succeeds() {
        let t = TempDir::new();
        {
            let (mut s, _) = open(&t.0, DEFAULT_BLOCK_SIZE);
            for i in 1..=3u64 {
                s.append(subj(i).as_bytes(), 0, &payload(i), i as i64)
                    .unwrap();
            }
            assert!(s.remove(2).unwrap());
        }
        let (mut s, rec) = open(&t.0, DEFAULT_BLOCK_SIZE);
        assert_eq!((rec.msgs, rec.last_seq), (2, 3));
        assert_intact(&mut s, [1, 3]);
        assert_eq!(s.load(2).unwrap(), None);
        s.append(subj(4).as_bytes(), 0, &payload(4), 4).unwrap();
        s.sync().unwrap();
        s.sync().unwrap();
        assert_eq!(s.compact(3).unwrap(), 1);
        s.sync().unwrap();
        drop(s);
        let (mut s, rec) = open(&t.0, DEFAULT_BLOCK_SIZE);
        assert_eq!((rec.msgs, rec.last_seq), (2, 4));
        assert_intact(&mut s, [3, 4]);
        s.delete().unwrap();
        assert!(!t.0.exists());
    }

    #[test]
    fn oversized_messages_are_refused() {
        let t = TempDir::new();
        let (mut s, _) = open(&t.0, DEFAULT_BLOCK_SIZE);
        let long = vec![b'a'; 70_000];
        assert!(matches!(
            s.append(&long, 0, b"", 1),
            Err(StoreError::TooLarge)
        ));
        assert!(matches!(
            s.append(b"a", 5, b"x", 1),
            Err(StoreError::TooLarge)
        ));
        assert_eq!(s.append(b"a", 0, b"x", 1).unwrap(), 1);
    }

    /// The bytes of the block files in `dir`, summed.
    fn disk_use(dir: &Path) -> u64 {
        blk_files(dir)
            .into_iter()
            .map(|id| fs::metadata(block_path(dir, id)).unwrap().len())
            .sum()
    }

    #[test]
    fn a_short_message_takes_less_than_in_nats_server() {
        let t = TempDir::new();
        let (mut s, _) = open(&t.0, DEFAULT_BLOCK_SIZE);
        // 100k messages 1 µs apart: a 16 byte payload on "bench" is 51 bytes in nats-server.
        let n = 100_000u64;
        let start = 1_700_000_000_000_000_000i64;
        for i in 0..n {
            s.append(b"bench", 0, &[i as u8; 16], start + i as i64 * 1000)
                .unwrap();
        }
        s.flush().unwrap();
        let per_msg = disk_use(&t.0) as f64 / n as f64;
        // 4 tag, 4 time (up to 0.1 s from the block's first), 1 subject length, 5 subject,
        // 16 payload, 4 checksum.
        assert!(per_msg < 34.01, "{per_msg}");
        drop(s);
        let (mut s, rec) = open(&t.0, DEFAULT_BLOCK_SIZE);
        assert_eq!((rec.msgs, rec.truncated_bytes), (n, 0));
        for i in [0, 1, n / 2, n - 1] {
            let m = s.load(i + 1).unwrap().unwrap();
            assert_eq!(
                (m.time, m.data.to_vec()),
                (start + i as i64 * 1000, vec![i as u8; 16])
            );
        }
    }

    #[test]
    fn recovery_reads_records_across_chunks_and_longer_than_one() {
        let t = TempDir::new();
        let body = |i: u64| {
            vec![
                i as u8;
                if i % 1000 == 999 {
                    SCAN_CHUNK + 7
                } else {
                    37 + (i as usize % 90)
                }
            ]
        };
        let n = 3000u64;
        {
            let (mut s, _) = open(&t.0, 4 << 20);
            for i in 1..=n {
                s.append(subj(i).as_bytes(), 0, &body(i), i as i64).unwrap();
            }
        }
        // The last record torn.
        let path = block_path(&t.0, *blk_files(&t.0).last().unwrap());
        let len = fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (mut s, rec) = open(&t.0, 4 << 20);
        assert_eq!((rec.msgs, rec.last_seq), (n - 1, n - 1));
        assert!(rec.truncated_bytes > 0 && rec.lost.is_empty());
        for i in 1..n {
            let m = s.load(i).unwrap().unwrap();
            assert_eq!((m.time, m.data.to_vec()), (i as i64, body(i)));
        }
    }

    #[test]
    fn any_time_and_headers_survive() {
        let t = TempDir::new();
        let times = [
            i64::MIN,
            i64::MAX,
            0,
            -1,
            1,
            i64::MAX,
            i64::MIN + 1,
            1 << 40,
            -(1 << 50),
        ];
        let hdr = b"NATS/1.0\r\nA: b\r\n\r\n";
        let body = |i: usize| {
            let mut d = hdr.to_vec();
            d.extend(std::iter::repeat_n(i as u8, i * 50));
            d
        };
        // A small block: several blocks, each with its own base time.
        let block_size = 300;
        {
            let (mut s, _) = open(&t.0, block_size);
            for (i, &time) in times.iter().enumerate() {
                let hl = if i % 2 == 0 { hdr.len() } else { 0 };
                s.append(b"t", hl, &body(i), time).unwrap();
            }
        }
        let (mut s, rec) = open(&t.0, block_size);
        assert_eq!((rec.msgs, rec.truncated_bytes), (times.len() as u64, 0));
        for (i, &time) in times.iter().enumerate() {
            let m = s.load(i as u64 + 1).unwrap().unwrap();
            let hl = if i % 2 == 0 { hdr.len() } else { 0 };
            assert_eq!((m.time, m.header_len, m.data.to_vec()), (time, hl, body(i)));
        }
        let st = s.state();
        assert_eq!((st.first_time, st.last_time), (i64::MIN, -(1 << 50)));
        assert_eq!(s.compact(3).unwrap(), 2);
        assert_eq!(s.state().first_time, 0);
    }

    #[test]
    fn a_record_checks_out_only_at_its_own_sequence() {
        let t = TempDir::new();
        fill(&t.0, DEFAULT_BLOCK_SIZE);
        // Records 10 and 11 swapped (same length, same subject length): both are sound records,
        // but not of the sequences their places give them.
        let path = block_path(&t.0, 1);
        let mut bytes = fs::read(&path).unwrap();
        let at = |seq: u64| BLOCK_HEADER + (seq as usize - 1) * REC as usize;
        let r = REC as usize;
        let ten = bytes[at(10)..at(10) + r].to_vec();
        bytes.copy_within(at(11)..at(11) + r, at(10));
        bytes[at(11)..at(11) + r].copy_from_slice(&ten);
        fs::write(&path, bytes).unwrap();
        let (mut s, rec) = open(&t.0, DEFAULT_BLOCK_SIZE);
        assert_eq!((rec.msgs, rec.last_seq), (9, 9));
        assert_eq!(rec.truncated_bytes, 51 * REC);
        assert_intact(&mut s, 1..=9);
    }

    #[test]
    fn other_versions_and_unknown_kinds_are_refused() {
        let t = TempDir::new();
        let a = t.0.join("a");
        fill(&a, DEFAULT_BLOCK_SIZE);
        let path = block_path(&a, 1);
        let good = fs::read(&path).unwrap();

        // A version 1 block (32 byte header, its own checksum) is not taken for a torn one.
        let mut v1 = good.clone();
        v1[4..8].copy_from_slice(&1u32.to_le_bytes());
        let crc = crc32c::crc32c(&v1[..28]);
        v1[28..32].copy_from_slice(&crc.to_le_bytes());
        fs::write(&path, &v1).unwrap();
        let r = FileStore::open(FileStoreConfig::new(&a));
        assert!(
            matches!(r, Err(StoreError::Corrupt(ref m)) if m.contains("version 1")),
            "{r:?}"
        );
        // Even one holding only its header.
        fs::write(&path, &v1[..32]).unwrap();
        let r = FileStore::open(FileStoreConfig::new(&a));
        assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");

        // A sound record of a kind this version does not know.
        let mut bytes = good.clone();
        let mut rec = Vec::new();
        rec.extend_from_slice(&(7u32 << LEN_BITS | 12).to_le_bytes());
        rec.extend_from_slice(&[1, 2, 3, 4]);
        let crc = crc32c::crc32c(&rec);
        rec.extend_from_slice(&crc.to_le_bytes());
        bytes.extend_from_slice(&rec);
        fs::write(&path, &bytes).unwrap();
        let r = FileStore::open(FileStoreConfig::new(&a));
        assert!(
            matches!(r, Err(StoreError::Corrupt(ref m)) if m.contains("kind 7")),
            "{r:?}"
        );
        // Torn, it is a torn tail like any other.
        let n = bytes.len();
        bytes[n - 1] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let (s, rec) = open(&a, DEFAULT_BLOCK_SIZE);
        assert_eq!((rec.msgs, rec.truncated_bytes), (60, 12));
        drop(s);
        assert_eq!(fs::read(&path).unwrap(), good);
    }

    #[test]
    fn varints_round_trip_in_their_shortest_form_only() {
        for v in [0, 1, 127, 128, 300, 1 << 35, u64::MAX - 1, u64::MAX] {
            let mut b = Vec::new();
            put_varint(&mut b, v);
            assert_eq!(b.len(), varint_len(v));
            let mut at = 0;
            assert_eq!((get_varint(&b, &mut at), at), (Some(v), b.len()));
            // Cut short.
            assert_eq!(get_varint(&b[..b.len() - 1], &mut 0), None);
        }
        for d in [0, 1, -1, i64::MAX, i64::MIN, 12345, -12345] {
            assert_eq!(unzigzag(zigzag(d)), d);
        }
        assert_eq!(zigzag(-1), 1);
        // 1 as two bytes; 11 bytes; a tenth byte past 64 bits.
        assert_eq!(get_varint(&[0x81, 0x00], &mut 0), None);
        assert_eq!(get_varint(&[0x80; 11], &mut 0), None);
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(get_varint(&over, &mut 0), None);
    }

    #[test]
    fn a_foreign_file_is_corrupt_not_truncated() {
        let t = TempDir::new();
        fs::write(block_path(&t.0, 1), b"this is not a block file at all, no").unwrap();
        let r = FileStore::open(FileStoreConfig::new(&t.0));
        assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
    }

    #[derive(Clone, Debug)]
    enum Op {
        Append {
            subj: usize,
            len: usize,
            hdr: bool,
        },
        Remove(u16),
        Compact {
            at: u16,
            past: bool,
        },
        Purge {
            filter: usize,
            up_to: Option<u16>,
            keep: Option<u8>,
        },
        /// `skip_to` this far past the next sequence (0: to it, a no-op), or back.
        Skip(u16),
        Flush,
        Reopen,
    }

    const SUBJECTS: [&str; 4] = ["a", "b.x", "b.y", "c.x"];
    const FILTERS: [&str; 5] = ["a", "b.*", "b.>", ">", "c.x"];

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0..SUBJECTS.len(), 0..40usize, any::<bool>())
                .prop_map(|(subj, len, hdr)| Op::Append { subj, len, hdr }),
            3 => any::<u16>().prop_map(Op::Remove),
            1 => (any::<u16>(), proptest::bool::weighted(0.2))
                .prop_map(|(at, past)| Op::Compact { at, past }),
            1 => (0..FILTERS.len(), proptest::option::of(any::<u16>()), proptest::option::of(0..4u8))
                .prop_map(|(filter, up_to, keep)| Op::Purge { filter, up_to, keep }),
            2 => (0..3000u16).prop_map(Op::Skip),
            1 => Just(Op::Flush),
            1 => Just(Op::Reopen),
        ]
    }

    fn agree(f: &mut FileStore, m: &mut MemoryStore) {
        let st = m.state();
        assert_eq!(f.state(), st);
        for q in 0..=st.last_seq + 1 {
            assert_eq!(f.load(q).unwrap(), m.load(q).unwrap(), "load {q}");
        }
        for s in SUBJECTS {
            assert_eq!(
                f.subject_state(s.as_bytes()),
                m.subject_state(s.as_bytes()),
                "{s}"
            );
        }
        let mut fs_ = f.subjects(b">");
        let mut ms = m.subjects(b">");
        fs_.sort_by(|a, b| a.0.cmp(&b.0));
        ms.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(fs_, ms);
        let mid = (st.first_seq + st.last_seq) / 2;
        for filter in FILTERS {
            let fl = filter.as_bytes();
            assert_eq!(
                f.load_last(fl).unwrap(),
                m.load_last(fl).unwrap(),
                "{filter}"
            );
            assert_eq!(
                f.load_next(mid, Some(fl)).unwrap(),
                m.load_next(mid, Some(fl)).unwrap()
            );
            assert_eq!(f.num_pending(mid, &[fl]), m.num_pending(mid, &[fl]));
        }
        assert_eq!(
            f.load_next(mid, None).unwrap(),
            m.load_next(mid, None).unwrap()
        );
        for q in [0, st.first_seq, mid, st.last_seq, st.last_seq + 1] {
            assert_eq!(f.num_pending(q, &[]), m.num_pending(q, &[]), "pending {q}");
        }
    }

    #[test]
    fn sequential_readers_read_ahead_and_the_cache_follows_the_blocks() {
        let t = TempDir::new();
        let (mut s, _) = open(&t.0, 64 << 10);
        let body = |i: u64, tag: u8| vec![tag.wrapping_add(i as u8); (i as usize * 37) % 700];
        for i in 1..=3000u64 {
            s.append(subj(i).as_bytes(), 0, &body(i, 0), i as i64)
                .unwrap();
            if i % 250 == 0 {
                s.flush().unwrap();
            }
        }
        // Two readers at their own positions, a random read now and then, the last 500 still
        // in the write buffer.
        let (mut a, mut b) = (1u64, 1500u64);
        for k in 0..1500u64 {
            for q in [&mut a, &mut b] {
                let m = s.load_next(*q, None).unwrap().unwrap();
                assert_eq!((m.seq, m.data.to_vec()), (*q, body(*q, 0)));
                *q += 1;
            }
            if k % 7 == 0 {
                let r = 1 + (k * 7919) % 3000;
                assert_eq!(s.load(r).unwrap().unwrap().data, body(r, 0));
            }
        }
        assert!(!s.cache.chunks.is_empty() && s.cache.chunks.len() <= READ_CHUNKS);
        for c in &s.cache.chunks {
            assert!(c.buf.len() <= READ_AHEAD);
        }
        // Filtered, with a literal and with a wildcard.
        for f in [&b"t.1"[..], b"t.*"] {
            let mut q = 0;
            let mut n = 0;
            while let Some(m) = s.load_next(q, Some(f)).unwrap() {
                assert_eq!(m.data, body(m.seq, 0));
                q = m.seq + 1;
                n += 1;
            }
            assert_eq!(n, if f == b"t.1" { 1000 } else { 3000 });
        }
        // Unlinked blocks take their chunks with them.
        s.compact(2000).unwrap();
        s.flush().unwrap();
        let first = s.blocks[0].id;
        assert!(first > 1);
        assert!(s.cache.chunks.iter().all(|c| c.block >= first));
        for q in 2000..=3000 {
            assert_eq!(s.load_next(q, None).unwrap().unwrap().data, body(q, 0));
        }
        // After a delete the block ids start again: nothing cached may answer for them.
        s.delete().unwrap();
        for i in 1..=3000u64 {
            s.append(subj(i).as_bytes(), 0, &body(i, 1), i as i64)
                .unwrap();
        }
        s.flush().unwrap();
        for q in (1..=3000).rev().chain(1..=3000) {
            assert_eq!(s.load_next(q, None).unwrap().unwrap().data, body(q, 1));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

        #[test]
        fn the_file_store_agrees_with_the_memory_store(
            ops in proptest::collection::vec(op(), 1..60),
            block_size in prop_oneof![Just(48u64), Just(64), Just(200), Just(1024), Just(DEFAULT_BLOCK_SIZE)],
        ) {
            let t = TempDir::new();
            let (mut f, _) = open(&t.0, block_size);
            let mut m = MemoryStore::new();
            for (i, op) in ops.into_iter().enumerate() {
                let time = i as i64 + 1;
                let span = m.state().last_seq + 2;
                match op {
                    Op::Append { subj, len, hdr } => {
                        let h = b"NATS/1.0\r\nK: v\r\n\r\n";
                        let mut data = if hdr { h.to_vec() } else { Vec::new() };
                        data.extend((0..len).map(|k| (k + i) as u8));
                        let hl = if hdr { h.len() } else { 0 };
                        let s = SUBJECTS[subj].as_bytes();
                        prop_assert_eq!(f.append(s, hl, &data, time).unwrap(), m.append(s, hl, &data, time).unwrap());
                    }
                    Op::Remove(q) => {
                        let q = u64::from(q) % span;
                        prop_assert_eq!(f.remove(q).unwrap(), m.remove(q).unwrap());
                    }
                    Op::Compact { at, past } => {
                        let q = if past { span + u64::from(at % 50) } else { u64::from(at) % span };
                        prop_assert_eq!(f.compact(q).unwrap(), m.compact(q).unwrap());
                    }
                    Op::Purge { filter, up_to, keep } => {
                        let fl = FILTERS[filter].as_bytes();
                        let up_to = up_to.map(|u| u64::from(u) % (span + 1));
                        let keep = keep.map(u64::from);
                        prop_assert_eq!(
                            f.purge_subject(fl, up_to, keep).unwrap(),
                            m.purge_subject(fl, up_to, keep).unwrap()
                        );
                    }
                    Op::Skip(n) => {
                        // Mostly short gaps (holes in the memory store's deque), some long.
                        let q = if n % 7 == 0 { span / 2 } else { span - 1 + u64::from(n % 40) * u64::from(n / 1000 + 1) };
                        f.skip_to(q).unwrap();
                        m.skip_to(q).unwrap();
                    }
                    Op::Flush => f.flush().unwrap(),
                    Op::Reopen => {
                        drop(f);
                        let (g, rec) = open(&t.0, block_size);
                        prop_assert_eq!((rec.truncated_bytes, rec.lost.len()), (0, 0));
                        f = g;
                    }
                }
                agree(&mut f, &mut m);
            }
            drop(f);
            let (mut f, _) = open(&t.0, block_size);
            agree(&mut f, &mut m);
        }
    }
}
