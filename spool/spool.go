// Package spool is the durable queue of Outbox, kept in one bbolt file.
//
// Each message has a small envelope record (sender, per-recipient state,
// DSN parameters, schedule) apart from its body, so a retry rewrites a few
// hundred bytes rather than the message. A due-time index finds the
// messages due now without scanning the queue. Every write goes through one
// committer goroutine that merges concurrent writers into a single bbolt
// transaction (group commit): an Enqueue returns only after the commit that
// holds it is on disk, and concurrent sessions share the fsyncs.
//
// The package knows nothing of SMTP; nothing else in Outbox imports bbolt.
package spool

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outbox-mta/outbox/internal/dsn"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout version this code writes. Version 2 added
// chunks kept in a bucket of their own (see putChunk); version 3 the
// counts by state that every write keeps (see counts.go), which a release
// that does not know them would leave wrong. This code also reads versions
// 1 and 2 and upgrades them when it opens the file for writing.
const SchemaVersion = 3

// oldestSchema is the oldest layout this code reads.
const oldestSchema = 1

var (
	bucketMeta = []byte("meta")
	bucketMsg  = []byte("msg")
	bucketBody = []byte("body")
	bucketDue  = []byte("due")
	// bucketPending marks the bodies being written: chunks already on disk
	// whose message has no envelope yet.
	bucketPending = []byte("pending")
	keySchema     = []byte("schema")
	keyApp        = []byte("app")
	appName       = []byte("outbox-spool")
)

// chunkSize is how bodies are split into bbolt values: big enough to keep
// the key count low, small enough that no single allocation is huge.
const chunkSize = 1 << 20

// Errors returned by Open and the accessors.
var (
	ErrLocked   = errors.New("spool is locked by another process")
	ErrNotSpool = errors.New("file is not an Outbox spool")
	ErrCorrupt  = errors.New("spool file is corrupt")
	ErrNotFound = errors.New("no such message in the queue")
	ErrClosed   = errors.New("spool is closed")
	// ErrNoSpace is a commit that failed for want of disk space (ENOSPC,
	// EDQUOT). Nothing of it is on disk, and the spool goes on working:
	// the next commit succeeds once space is back.
	ErrNoSpace = errors.New("no space left on the spool's file system")
)

// noSpace wraps a commit error that comes from a full disk in ErrNoSpace.
// bbolt reports a failed file resize with the errno flattened into text,
// hence the second test.
func noSpace(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		strings.Contains(err.Error(), syscall.ENOSPC.Error()) || strings.Contains(err.Error(), syscall.EDQUOT.Error()) {
		return fmt.Errorf("%w: %v", ErrNoSpace, err)
	}
	return err
}

// Status is where one recipient stands.
type Status string

// Recipient states.
const (
	Pending Status = "pending"
	Sent    Status = "sent"
	Failed  Status = "failed"
)

// Recipient is the per-recipient state of a message.
type Recipient struct {
	Address   string       `json:"address"`
	Status    Status       `json:"status"`
	Attempts  int          `json:"attempts,omitempty"`
	LastError string       `json:"last_error,omitempty"`
	Notify    []dsn.Notify `json:"notify,omitempty"` // DSN NOTIFY as received
	ORCPT     string       `json:"orcpt,omitempty"`  // DSN ORCPT as received ("rfc822;addr")
	Remote    string       `json:"remote,omitempty"` // the upstream host that last answered
	Code      string       `json:"code,omitempty"`   // last enhanced status, e.g. "5.1.1"
	Updated   time.Time    `json:"updated,omitzero"`
}

// Message is the envelope of one queued message.
type Message struct {
	ID         string      `json:"id"`
	From       string      `json:"from"` // "" is the null sender <>
	Recipients []Recipient `json:"recipients"`
	EnvID      string      `json:"envid,omitempty"`
	Ret        string      `json:"ret,omitempty"`       // FULL | HDRS
	BodyType   string      `json:"body_type,omitempty"` // 7BIT | 8BITMIME
	UTF8       bool        `json:"smtputf8,omitempty"`
	Submitter  string      `json:"submitter"` // client address or local user
	// UID is the local user who submitted the message (unix socket peer
	// credentials, or the owner of a maildrop file). 0 also means "not a
	// local user": only root and the daemon's user may read such a
	// message's content, so the zero value of older records is safe.
	UID uint32 `json:"uid,omitempty"`
	// Tags are the message's tags (X-Outbox-Tag-NAME fields) for the
	// names relay.hcl lists, name → value, for delivery logs and metrics.
	Tags        map[string]string `json:"tags,omitempty"`
	Arrived     time.Time         `json:"arrived"`
	Attempts    int               `json:"attempts"`
	NextAttempt time.Time         `json:"next_attempt"`
	Held        bool              `json:"held"`
	Size        int64             `json:"size"`
	DelayWarned bool              `json:"delay_warned,omitempty"`
}

// Done reports whether every recipient is sent or failed.
func (m *Message) Done() bool {
	for _, r := range m.Recipients {
		if r.Status == Pending {
			return false
		}
	}
	return true
}

// Options tune Open.
type Options struct {
	// Timeout is how long to wait for the file lock; 0 means 1 second.
	Timeout time.Duration
	// ReadOnly opens the file for reading (queue listing without the daemon).
	ReadOnly bool
	// MaxBatch caps how many writes share one commit; 0 means 512.
	MaxBatch int
}

// Spool is an open queue.
type Spool struct {
	db       *bolt.DB
	path     string
	ops      chan *op
	quit     chan struct{}
	done     chan struct{}
	closed   atomic.Bool
	closeMu  sync.RWMutex
	maxBatch int

	damaged    chan error // see Damaged
	damageOnce sync.Once

	orphanMu sync.Mutex
	orphans  map[string]bool // unfinished bodies whose removal failed

	commits atomic.Uint64
	writes  atomic.Uint64
}

type op struct {
	fn   func(tx *bolt.Tx) error
	done chan error
}

// Open opens or creates the spool at path.
func Open(path string, o Options) (*Spool, error) {
	if o.Timeout == 0 {
		o.Timeout = time.Second
	}
	if o.MaxBatch == 0 {
		o.MaxBatch = 512
	}
	if o.ReadOnly {
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("open spool %s: %w", path, err)
		}
	}
	if !o.ReadOnly {
		if err := precheck(path, o.Timeout); err != nil {
			return nil, err
		}
	}
	db, err := openDB(path, o.Timeout, o.ReadOnly)
	if err != nil {
		return nil, err
	}
	s := &Spool{db: db, path: path, maxBatch: o.MaxBatch, orphans: map[string]bool{}, damaged: make(chan error, 1)}
	if err := s.checkSchema(o.ReadOnly); err != nil {
		db.Close()
		return nil, err
	}
	if !o.ReadOnly {
		s.ops = make(chan *op, 1024)
		s.quit = make(chan struct{})
		s.done = make(chan struct{})
		go s.committer()
	}
	return s, nil
}

// openDB opens the bbolt file, turning a panic on a damaged file into
// ErrCorrupt.
func openDB(path string, timeout time.Duration, readOnly bool) (db *bolt.DB, err error) {
	// A panic inside bolt.Open (a damaged freelist page) leaves no DB to
	// close: the file, and the lock on it, are closed here instead.
	var file *os.File
	err = guard(path, func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
				f, err := os.OpenFile(name, flag, mode)
				file = f
				return f, err
			},
			Timeout:  timeout,
			ReadOnly: readOnly,
			// The freelist is stored at each commit, so an open reads it
			// from its pages instead of walking the whole file to rebuild
			// it: start-up costs the same at ten messages and at a
			// million, and does not fault the file into memory. A commit
			// that fails (a full disk) or panics (a damaged page) rolls
			// back by rereading those pages too, where without them
			// bbolt walked the file again, in a goroutine whose panic
			// on a damaged page nothing could catch. The
			// cost is writing the list at each commit: nothing to speak
			// of while the queue grows; after 90,000 of 100,000 messages
			// are deleted, a lone commit takes about 3 ms more.
			NoFreelistSync: false,
			FreelistType:   bolt.FreelistMapType,
		})
		return err
	})
	if err != nil {
		if db == nil && file != nil {
			file.Close()
		}
		return nil, openError(path, err)
	}
	return db, nil
}

// precheck walks the tree of an existing file in a read-only open before
// it is opened for writing, when the file has no stored freelist (a spool
// written by a release that did not store it: NoFreelistSync). A writable
// open of such a file rebuilds the freelist by walking every page, and
// bbolt reports a damaged page found there by panicking in a goroutine of
// its own, which no recover can catch: the daemon would die with a stack
// trace instead of an error. The walk here reads the same pages (every
// branch and leaf page, no value beyond its first page) in this
// goroutine, under guard, so a damaged file gives ErrCorrupt; bbolt's own
// walk then reads pages the kernel has just cached, and stores the
// freelist, so this happens once per spool. Measured on a spool of
// 100,000 messages of 4 KiB (694 MiB, TestPrecheckCost): 1.3 to 1.8 s,
// next to 1.8 to 2.3 s for bbolt's writable open.
func precheck(path string, timeout time.Duration) error {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() == 0 {
		return nil // a new spool
	}
	if stored, err := checkFreelist(path); err != nil || stored {
		return err // bbolt reads the stored freelist and walks nothing
	}
	db, err := openDB(path, timeout, true)
	if err != nil {
		return err
	}
	defer db.Close()
	return guard(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) })
		})
	})
}

// checkFreelist reports whether the bbolt file at path has its freelist
// stored, as its current meta page says, and checks that stored freelist.
// bbolt reads it during a writable open and panics on a damaged one; the
// panic is caught (guard), but the file's mapping, which holds its lock,
// stays. So the freelist is read here first, with plain reads: a damaged
// one is ErrCorrupt before bbolt maps anything.
//
// The layout, in the byte order of the machines Outbox runs on
// (little-endian; on others the checksum fails and the walk runs): a page
// starts with a 16-byte header (page number 8, flags 2, count 2, overflow
// pages 4). A meta page's body is magic, version, page size and flags (4
// bytes each), the root bucket (16), the freelist's page number (8), the
// high-water page (8), the transaction ID (8) and an FNV-64a checksum of
// what precedes it. The valid meta with the higher transaction ID is the
// current one, as for bbolt. A freelist page holds its count page numbers
// after the header (a count of 0xFFFF means the first of them is the
// count). A meta that does not read as this layout gives false: the walk
// in precheck runs and reports what it finds.
func checkFreelist(path string) (stored bool, err error) {
	f, err := os.Open(path)
	if err != nil {
		return false, nil
	}
	defer f.Close()
	le := binary.LittleEndian
	type meta struct {
		ok                   bool
		pageSize             uint32
		freelist, high, txid uint64
	}
	read := func(off int64) (m meta) {
		var b [80]byte
		if _, err := f.ReadAt(b[:], off); err != nil {
			return m
		}
		body := b[16:]
		if le.Uint32(body[0:]) != 0xED0CDAED || le.Uint32(body[4:]) != 2 {
			return m
		}
		h := fnv.New64a()
		h.Write(body[:56])
		if h.Sum64() != le.Uint64(body[56:]) {
			return m
		}
		return meta{ok: true, pageSize: le.Uint32(body[8:]), freelist: le.Uint64(body[32:]), high: le.Uint64(body[40:]), txid: le.Uint64(body[48:])}
	}
	m0 := read(0)
	ps := int64(m0.pageSize)
	if !m0.ok {
		ps = int64(os.Getpagesize())
	}
	m1 := read(ps)
	cur := m0
	if !m0.ok || (m1.ok && m1.txid > m0.txid) {
		cur = m1
	}
	if !cur.ok || cur.freelist == ^uint64(0) {
		return false, nil
	}
	ps = int64(cur.pageSize)
	bad := func(why string, args ...any) (bool, error) {
		return false, fmt.Errorf("spool %s: %w (freelist page %d: %s; restore a backup or move the file aside)", path, ErrCorrupt, cur.freelist, fmt.Sprintf(why, args...))
	}
	if cur.freelist < 2 || cur.freelist >= cur.high {
		return bad("beyond the file's %d pages", cur.high)
	}
	var hdr [24]byte
	if _, err := f.ReadAt(hdr[:], int64(cur.freelist)*ps); err != nil {
		return bad("%v", err)
	}
	if le.Uint64(hdr[0:]) != cur.freelist || le.Uint16(hdr[8:])&0x10 == 0 {
		return bad("not a freelist page")
	}
	count, first := uint64(le.Uint16(hdr[10:])), int64(16)
	if count == 0xFFFF {
		count, first = le.Uint64(hdr[16:]), 24
	}
	overflow := uint64(le.Uint32(hdr[12:]))
	if cur.freelist+overflow >= cur.high || uint64(first)+8*count > (overflow+1)*uint64(ps) {
		return bad("%d entries do not fit its %d pages", count, overflow+1)
	}
	r := bufio.NewReaderSize(io.NewSectionReader(f, int64(cur.freelist)*ps+first, int64(8*count)), 64<<10)
	var e [8]byte
	for i := uint64(0); i < count; i++ {
		if _, err := io.ReadFull(r, e[:]); err != nil {
			return bad("%v", err)
		}
		if id := le.Uint64(e[:]); id < 2 || id >= cur.high {
			return bad("lists page %d, beyond the file's %d pages", id, cur.high)
		}
	}
	return true, nil
}

// walk visits every key of b and of its nested buckets.
func walk(b *bolt.Bucket) error {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			if nb := b.Bucket(k); nb != nil {
				if err := walk(nb); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// guard runs fn, turning a panic into ErrCorrupt. bbolt panics on some
// damaged pages (an invalid page type, a page number out of range), and a
// page number past the end of a truncated file faults; SetPanicOnFault
// makes that fault a panic too, for this goroutine while fn runs.
func guard(path string, fn func() error) error {
	_, err := guardPanic(path, fn)
	return err
}

// guardPanic is guard that also says whether fn panicked.
func guardPanic(path string, fn func() error) (panicked bool, err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("spool %s: %w (%v; restore a backup or move the file aside)", path, ErrCorrupt, p)
			panicked = true
		}
	}()
	return false, fn()
}

// guard is the package guard for this spool's file. A damaged page met
// here is also reported on Damaged.
func (s *Spool) guard(fn func() error) error {
	panicked, err := guardPanic(s.path, fn)
	if panicked {
		s.damageOnce.Do(func() { s.damaged <- err })
	}
	return err
}

// Damaged delivers the first damaged page an operation met, as an
// ErrCorrupt error. Open reads only what bbolt needs to open (the meta
// pages and the stored freelist), so damage elsewhere in the file shows
// only when an operation reads it; a daemon stops on this rather than go
// on writing to a damaged file.
func (s *Spool) Damaged() <-chan error { return s.damaged }

// view runs a read transaction under guard.
func (s *Spool) view(fn func(tx *bolt.Tx) error) error {
	return s.guard(func() error { return s.db.View(fn) })
}

// update runs a write transaction under guard; bbolt rolls the
// transaction back when a panic leaves it.
func (s *Spool) update(fn func(tx *bolt.Tx) error) error {
	return s.guard(func() error { return s.db.Update(fn) })
}

func openError(path string, err error) error {
	if errors.Is(err, ErrCorrupt) {
		return err
	}
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return fmt.Errorf("open spool %s: %w (is `outbox serve` running? queue commands reach it through the admin socket)", path, ErrLocked)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrVersionMismatch):
		return fmt.Errorf("open spool %s: %w (not a bbolt database; check spool.path)", path, ErrNotSpool)
	case errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrInvalidMapping),
		// bbolt has no error value for a file shorter than its two meta
		// pages: a truncated spool.
		strings.Contains(err.Error(), "file size too small"):
		return fmt.Errorf("open spool %s: %w (%v; restore a backup or move the file aside)", path, ErrCorrupt, err)
	}
	return fmt.Errorf("open spool %s: %w", path, err)
}

func (s *Spool) checkSchema(readOnly bool) error {
	check := func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			// A bbolt file with other buckets is someone else's database.
			empty := true
			_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error { empty = false; return nil })
			if !empty {
				return fmt.Errorf("open spool %s: %w (a bbolt database of another program; check spool.path)", s.path, ErrNotSpool)
			}
			if readOnly {
				return nil
			}
			var err error
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			var v [4]byte
			binary.BigEndian.PutUint32(v[:], SchemaVersion)
			if err := meta.Put(keySchema, v[:]); err != nil {
				return err
			}
			if err := meta.Put(keyApp, appName); err != nil {
				return err
			}
			for _, b := range [][]byte{bucketMsg, bucketBody, bucketDue, bucketPending} {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return writeCounts(tx, counts{})
		}
		if !bytes.Equal(meta.Get(keyApp), appName) {
			return fmt.Errorf("open spool %s: %w (meta bucket without the Outbox marker)", s.path, ErrNotSpool)
		}
		v := meta.Get(keySchema)
		if len(v) != 4 {
			return fmt.Errorf("open spool %s: %w (schema version missing)", s.path, ErrCorrupt)
		}
		n := binary.BigEndian.Uint32(v)
		if n < oldestSchema || n > SchemaVersion {
			return fmt.Errorf("open spool %s: schema version %d, this outbox reads versions %d to %d (use the outbox release that wrote it)", s.path, n, oldestSchema, SchemaVersion)
		}
		for _, b := range [][]byte{bucketMsg, bucketBody, bucketDue} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("open spool %s: %w (bucket %s missing)", s.path, ErrCorrupt, b)
			}
		}
		if readOnly {
			return nil
		}
		if err := ensureCounts(tx); err != nil {
			return err
		}
		if n < SchemaVersion {
			var v [4]byte
			binary.BigEndian.PutUint32(v[:], SchemaVersion)
			if err := meta.Put(keySchema, v[:]); err != nil {
				return err
			}
		}
		// Bodies a crash left unfinished: no session writes one now.
		if _, err := tx.CreateBucketIfNotExists(bucketPending); err != nil {
			return err
		}
		_, err := dropPendingAll(tx)
		return err
	}
	if readOnly {
		return s.view(check)
	}
	return s.update(check)
}

// Close stops the committer after the writes already submitted and closes
// the file.
func (s *Spool) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	if s.ops != nil {
		s.closeMu.Lock() // waits for submitters in flight
		close(s.quit)
		s.closeMu.Unlock()
		<-s.done
	}
	return s.db.Close()
}

// Path is the file the spool lives in.
func (s *Spool) Path() string { return s.path }

// Stats counts commits and the writes they carried; Writes/Commits is the
// batching factor of group commit.
type Stats struct {
	Commits uint64
	Writes  uint64
}

// Stats returns the commit counters since Open.
func (s *Spool) Stats() Stats {
	return Stats{Commits: s.commits.Load(), Writes: s.writes.Load()}
}

// write runs fn in a shared transaction and returns once it is on disk.
// fn may run more than once (when another write in its batch fails), so it
// must be idempotent and free of side effects outside tx.
func (s *Spool) write(fn func(tx *bolt.Tx) error) error {
	if s.ops == nil {
		return errors.New("spool is open read-only")
	}
	o := &op{fn: fn, done: make(chan error, 1)}
	s.closeMu.RLock()
	if s.closed.Load() {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	s.ops <- o
	s.closeMu.RUnlock()
	return <-o.done
}

func (s *Spool) committer() {
	defer close(s.done)
	batch := make([]*op, 0, s.maxBatch)
	for {
		batch = batch[:0]
		select {
		case o := <-s.ops:
			batch = append(batch, o)
		case <-s.quit:
			// Finish what was submitted before Close.
			for {
				select {
				case o := <-s.ops:
					s.run([]*op{o})
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < s.maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		s.run(batch)
	}
}

func (s *Spool) run(batch []*op) {
	err := s.update(func(tx *bolt.Tx) error {
		for _, o := range batch {
			if err := o.fn(tx); err != nil {
				return err
			}
		}
		return nil
	})
	s.commits.Add(1)
	err = noSpace(err)
	// A full disk fails every write of the batch alike: running them one
	// by one would only repeat the failure.
	if err == nil || len(batch) == 1 || errors.Is(err, ErrNoSpace) {
		s.writes.Add(uint64(len(batch)))
		for _, o := range batch {
			o.done <- err
		}
		return
	}
	// One write failed and took the batch down: run each on its own so
	// only the faulty one reports the error.
	for _, o := range batch {
		s.run([]*op{o})
	}
}

// NewID returns a new queue ID: time-ordered and unique.
func NewID(now time.Time) string {
	var r [3]byte
	rand.Read(r[:]) // never fails (crypto/rand, Go 1.24+)
	// 48 bits of microseconds are enough until the year 10889.
	return fmt.Sprintf("%012X%X", uint64(now.UnixMicro())&0xFFFFFFFFFFFF, r[:])
}

func dueKey(t time.Time, id string) []byte {
	k := make([]byte, 8+len(id))
	n := t.UnixNano()
	if n < 0 {
		n = 0
	}
	binary.BigEndian.PutUint64(k, uint64(n))
	copy(k[8:], id)
	return k
}

func bodyKey(id string, chunk int) []byte {
	k := make([]byte, len(id)+1+4)
	copy(k, id)
	k[len(id)] = 0
	binary.BigEndian.PutUint32(k[len(id)+1:], uint32(chunk))
	return k
}

// keyChunk is the one key of a chunk's own bucket.
var keyChunk = []byte("c")

// putChunk stores one full chunk of a body being streamed in a bucket of
// its own, under the body bucket. bbolt keeps at least two (in practice up
// to four) values in a leaf and rewrites the whole leaf when a key is
// added to it: with chunks as plain values, each chunk's commit would copy
// up to three earlier megabyte chunks out of the file's mapping and write
// them again, and the mapped pages it read count in the daemon's memory
// (eight concurrent 24 MiB messages peaked at 234 MiB of RSS that way,
// 55 MiB with a bucket per chunk). A nested bucket puts each chunk on
// pages of its own: a later commit rewrites only the parent leaf, which
// holds small bucket headers.
func putChunk(tx *bolt.Tx, key, data []byte) error {
	b, err := tx.Bucket(bucketBody).CreateBucketIfNotExists(key)
	if err != nil {
		return err
	}
	return b.Put(keyChunk, data)
}

// getChunk returns a chunk stored either way; nil when there is none.
func getChunk(bodies *bolt.Bucket, key []byte) []byte {
	if v := bodies.Get(key); v != nil {
		return v
	}
	if b := bodies.Bucket(key); b != nil {
		return b.Get(keyChunk)
	}
	return nil
}

var scratchPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

// fill reads from r until buf is full or r ends. end is true when r
// reported io.EOF: only that is the end of a whole body. Any other error,
// io.ErrUnexpectedEOF included (what an SMTP DATA reader returns when the
// connection closes before the final dot), means the body is incomplete.
func fill(r io.Reader, buf []byte) (n int, end bool, err error) {
	for n < len(buf) {
		k, err := r.Read(buf[n:])
		n += k
		if err == io.EOF {
			return n, true, nil
		}
		if err != nil {
			return n, false, err
		}
	}
	return n, false, nil
}

// Enqueue stores a new message and its body, and returns once both are on
// disk. m.ID, m.Size and unset times are filled in.
//
// The body streams into the spool: it is read one chunk (1 MiB) at a time,
// and each full chunk is written in a shared commit as soon as it is read,
// under a pending mark, so a session holds one chunk in memory whatever
// the message's size. The last chunk, the envelope and the removal of the
// mark share one commit, the one whose durability the caller waits for; a
// body of one chunk (most mail) costs that commit alone. Only io.EOF ends
// a body: any other error from body (io.ErrUnexpectedEOF included) stores
// nothing, removes what was written and is returned. Chunks left behind by
// a crash are removed by the next Open.
func (s *Spool) Enqueue(ctx context.Context, m *Message, body io.Reader) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := time.Now()
	if m.ID == "" {
		m.ID = NewID(now)
	}
	id := m.ID
	scratch := scratchPool.Get().(*[]byte)
	defer scratchPool.Put(scratch)
	buf := *scratch
	var size int64
	chunk := 0
	for {
		n, end, err := fill(body, buf)
		if err == nil && !end {
			err = ctx.Err()
		}
		if err != nil {
			if chunk > 0 {
				s.abandon(id)
			}
			return err
		}
		size += int64(n)
		if end {
			var last []byte
			if n > 0 {
				last = buf[:n]
			}
			err := s.room(len(last))
			if err == nil {
				err = s.commitMessage(m, now, last, chunk, size, chunk > 0)
			}
			if err != nil && chunk > 0 {
				s.abandon(id)
			} else if err == nil {
				s.dropOrphans()
			}
			return err
		}
		first, data, key := chunk == 0, buf[:n], bodyKey(id, chunk)
		if err = s.room(n); err == nil {
			err = s.write(func(tx *bolt.Tx) error {
				if first {
					if err := tx.Bucket(bucketPending).Put([]byte(id), nil); err != nil {
						return err
					}
				}
				return putChunk(tx, key, data)
			})
		}
		if err != nil {
			// A failed commit leaves nothing on disk: only the chunks
			// before this one need removing.
			if chunk > 0 {
				s.abandon(id)
			}
			return err
		}
		chunk++
	}
}

// commitMessage writes the envelope, the body's last chunk (number chunk,
// if any) and the due entry in one commit; pending says earlier chunks are
// on disk under a pending mark, which the same commit removes.
func (s *Spool) commitMessage(m *Message, now time.Time, last []byte, chunk int, size int64, pending bool) error {
	if m.Arrived.IsZero() {
		m.Arrived = now
	}
	if m.NextAttempt.IsZero() {
		m.NextAttempt = m.Arrived
	}
	m.Size = size
	for i := range m.Recipients {
		if m.Recipients[i].Status == "" {
			m.Recipients[i].Status = Pending
		}
	}
	rec, err := json.Marshal(m)
	if err != nil {
		return err
	}
	id := m.ID
	due := !m.Held && !m.Done()
	next := m.NextAttempt
	st := &Message{Held: m.Held, Attempts: m.Attempts}
	return s.write(func(tx *bolt.Tx) error {
		old, err := getMsg(tx, id)
		if err != nil && err != ErrNotFound {
			return err
		}
		if err := adjustCounts(tx, old, st); err != nil {
			return err
		}
		if err := tx.Bucket(bucketMsg).Put([]byte(id), rec); err != nil {
			return err
		}
		if last != nil {
			put := tx.Bucket(bucketBody).Put
			if pending {
				// A neighbour's commit would rewrite it as a plain value:
				// the last chunk of a streamed body can be a megabyte too.
				put = func(k, v []byte) error { return putChunk(tx, k, v) }
			}
			if err := put(bodyKey(id, chunk), last); err != nil {
				return err
			}
		}
		if pending {
			if err := tx.Bucket(bucketPending).Delete([]byte(id)); err != nil {
				return err
			}
		}
		if due {
			return tx.Bucket(bucketDue).Put(dueKey(next, id), nil)
		}
		return nil
	})
}

// minFree is the room a new body's commit leaves on the spool's file
// system beside the body itself: bbolt copies the branch pages it changes
// and may grow the file.
const minFree = 256 << 10

// room returns ErrNoSpace when the spool's file system has less than n
// bytes and minFree to spare, before any commit is tried. A commit that
// fails for want of space costs more than a refusal: bbolt's rollback
// reloads the freelist (and, in a spool not yet upgraded to a stored
// freelist, rebuilds it by walking every page of the file), in the
// committer that every writer waits for.
// Deletes and updates are never refused here: they are what frees room.
func (s *Spool) room(n int) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(filepath.Dir(s.path), &st); err != nil {
		return nil // let the commit tell
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free < int64(n)+minFree {
		return fmt.Errorf("%w: %d bytes free on the file system of %s", ErrNoSpace, free, s.path)
	}
	return nil
}

// abandon removes the chunks of a body that will not be completed. When
// that fails too (the disk is full, the spool closing), the pending mark
// stays and the chunks go at the next successful abandon or Open.
func (s *Spool) abandon(id string) {
	s.orphanMu.Lock()
	s.orphans[id] = true
	s.orphanMu.Unlock()
	s.dropOrphans()
}

// dropOrphans retries the removal of abandoned bodies; Enqueue calls it
// after a successful commit, when the disk has room again.
func (s *Spool) dropOrphans() {
	s.orphanMu.Lock()
	if len(s.orphans) == 0 {
		s.orphanMu.Unlock()
		return
	}
	ids := make([]string, 0, len(s.orphans))
	for o := range s.orphans {
		ids = append(ids, o)
	}
	s.orphanMu.Unlock()
	err := s.write(func(tx *bolt.Tx) error {
		for _, o := range ids {
			if err := dropPending(tx, o); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil {
		s.orphanMu.Lock()
		for _, o := range ids {
			delete(s.orphans, o)
		}
		s.orphanMu.Unlock()
	}
}

// dropPending removes the chunks of an unfinished body and its mark. A
// message whose envelope exists is whole: only a stray mark goes then.
func dropPending(tx *bolt.Tx, id string) error {
	if err := tx.Bucket(bucketPending).Delete([]byte(id)); err != nil {
		return err
	}
	if tx.Bucket(bucketMsg).Get([]byte(id)) != nil {
		return nil
	}
	return dropBody(tx, id)
}

// dropPendingAll removes every unfinished body: at Open, no session is
// writing one.
func dropPendingAll(tx *bolt.Tx) (int, error) {
	var ids []string
	if err := tx.Bucket(bucketPending).ForEach(func(k, _ []byte) error {
		ids = append(ids, string(k))
		return nil
	}); err != nil {
		return 0, err
	}
	for _, id := range ids {
		if err := dropPending(tx, id); err != nil {
			return 0, err
		}
	}
	return len(ids), nil
}

func getMsg(tx *bolt.Tx, id string) (*Message, error) {
	v := tx.Bucket(bucketMsg).Get([]byte(id))
	if v == nil {
		return nil, ErrNotFound
	}
	m := new(Message)
	if err := json.Unmarshal(v, m); err != nil {
		return nil, fmt.Errorf("message %s: %w (%v)", id, ErrCorrupt, err)
	}
	return m, nil
}

// Get returns the envelope of one message.
func (s *Spool) Get(id string) (*Message, error) {
	var m *Message
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		m, err = getMsg(tx, id)
		return err
	})
	return m, err
}

// List returns every queued message in ID order. It holds the whole queue
// in memory: for small queues and tests; Range walks any queue.
func (s *Spool) List() ([]*Message, error) {
	var out []*Message
	err := s.Range("", func(m *Message) error { out = append(out, m); return nil })
	return out, err
}

// rangeBatch is how many envelopes Range reads per read transaction.
const rangeBatch = 256

// Range calls fn for each queued message in ID order, which is the order
// of arrival, starting after the ID after ("" starts at the first). It
// reads rangeBatch envelopes per read transaction and calls fn outside
// it, so the memory it holds is one batch whatever the queue's length,
// and a slow fn (a listing sent to a slow client) never keeps a read
// transaction open: a long one would stop bbolt from reusing freed pages
// and make a writer that grows the file wait for it. Messages that arrive
// or leave while it runs may or may not be seen. An error from fn stops
// the walk and is returned.
func (s *Spool) Range(after string, fn func(m *Message) error) error {
	var last []byte
	if after != "" {
		last = []byte(after)
	}
	batch := make([]*Message, 0, rangeBatch)
	for {
		batch = batch[:0]
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketMsg).Cursor()
			k, v := c.First()
			if last != nil {
				k, v = c.Seek(last)
				if k != nil && bytes.Equal(k, last) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(batch) < rangeBatch; k, v = c.Next() {
				m := new(Message)
				if err := json.Unmarshal(v, m); err != nil {
					return fmt.Errorf("message %s: %w (%v)", k, ErrCorrupt, err)
				}
				batch = append(batch, m)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, m := range batch {
			if err := fn(m); err != nil {
				return err
			}
		}
		if len(batch) < rangeBatch {
			return nil
		}
		last = []byte(batch[len(batch)-1].ID)
	}
}

// flushBatch is how many envelopes Flush looks at per commit: enough to
// amortise the fsync, few enough that a commit stays short for the
// writers that share it.
const flushBatch = 1000

// Flush makes every message that waits for a later retry due at now, and
// returns how many it changed. It walks the queue in ID order in commits
// of flushBatch envelopes, so its memory is one batch, the messages
// already changed can be delivered while it goes on, and a message whose
// retry fails during the flush is not made due again. progress, if not
// nil, is called after each commit with the running total (to wake the
// scheduler). Held messages stay held.
func (s *Spool) Flush(now time.Time, progress func(n int)) (int, error) {
	total := 0
	var last []byte
	for {
		var changed int
		var next []byte
		var end bool
		err := s.write(func(tx *bolt.Tx) error {
			changed, next, end = 0, nil, false
			msgs, due := tx.Bucket(bucketMsg), tx.Bucket(bucketDue)
			type upd struct {
				id  []byte
				m   *Message
				old time.Time
			}
			var todo []upd
			c := msgs.Cursor()
			k, v := c.First()
			if last != nil {
				k, v = c.Seek(last)
				if k != nil && bytes.Equal(k, last) {
					k, v = c.Next()
				}
			}
			seen := 0
			for ; k != nil && seen < flushBatch; k, v = c.Next() {
				seen++
				next = bytes.Clone(k)
				m := new(Message)
				if err := json.Unmarshal(v, m); err != nil {
					return fmt.Errorf("message %s: %w (%v)", k, ErrCorrupt, err)
				}
				if m.Held || !m.NextAttempt.After(now) || m.Done() {
					continue
				}
				todo = append(todo, upd{next, m, m.NextAttempt})
			}
			end = k == nil
			// Changed after the walk: a cursor must not see the bucket
			// change under it.
			for _, u := range todo {
				u.m.NextAttempt = now
				rec, err := json.Marshal(u.m)
				if err != nil {
					return err
				}
				if err := msgs.Put(u.id, rec); err != nil {
					return err
				}
				if err := due.Delete(dueKey(u.old, u.m.ID)); err != nil {
					return err
				}
				if err := due.Put(dueKey(now, u.m.ID), nil); err != nil {
					return err
				}
			}
			changed = len(todo)
			return nil
		})
		if err != nil {
			return total, err
		}
		total += changed
		if progress != nil && changed > 0 {
			progress(total)
		}
		if end || next == nil {
			return total, nil
		}
		last = next
	}
}

// Count returns the number of queued messages in O(1) (see Counts).
func (s *Spool) Count() (int, error) {
	c, err := s.Counts()
	return c.Total, err
}

// DueExcept returns up to limit messages whose next attempt is at or
// before now, earliest first, skipping the IDs for which skip returns true
// (messages already being delivered) before their envelopes are even
// decoded. It costs O(log n + k): a seek in the due index.
func (s *Spool) DueExcept(now time.Time, limit int, skip func(id string) bool) ([]*Message, error) {
	var out []*Message
	end := dueKey(now, "\xff")
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDue).Cursor()
		for k, _ := c.First(); k != nil && bytes.Compare(k, end) <= 0 && len(out) < limit; k, _ = c.Next() {
			id := string(k[8:])
			if skip != nil && skip(id) {
				continue
			}
			m, err := getMsg(tx, id)
			if err == ErrNotFound {
				continue // tolerated: the index is rebuilt by Update
			}
			if err != nil {
				return err
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// NextDueExcept returns the earliest next-attempt time in the queue,
// ignoring the IDs for which skip returns true; ok is false when nothing
// else is scheduled.
func (s *Spool) NextDueExcept(skip func(id string) bool) (t time.Time, ok bool, err error) {
	err = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketDue).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			if skip != nil && skip(string(k[8:])) {
				continue
			}
			t, ok = time.Unix(0, int64(binary.BigEndian.Uint64(k[:8]))), true
			return nil
		}
		return nil
	})
	return t, ok, err
}

// Update changes one message's envelope in a durable commit. fn gets a
// fresh copy and may run more than once. When every recipient is then sent
// or failed, the message and its body leave the queue. Update returns the
// envelope as stored (or as it was when it left).
func (s *Spool) Update(id string, fn func(m *Message) error) (*Message, error) {
	var result *Message
	err := s.write(func(tx *bolt.Tx) error {
		m, err := getMsg(tx, id)
		if err != nil {
			return err
		}
		oldKey := dueKey(m.NextAttempt, id)
		old := &Message{Held: m.Held, Attempts: m.Attempts}
		if err := fn(m); err != nil {
			return err
		}
		due := tx.Bucket(bucketDue)
		if err := due.Delete(oldKey); err != nil {
			return err
		}
		result = m
		if m.Done() {
			if err := adjustCounts(tx, old, nil); err != nil {
				return err
			}
			return dropMsg(tx, id) // its due entry went above
		}
		if err := adjustCounts(tx, old, m); err != nil {
			return err
		}
		rec, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if err := tx.Bucket(bucketMsg).Put([]byte(id), rec); err != nil {
			return err
		}
		if !m.Held {
			return due.Put(dueKey(m.NextAttempt, id), nil)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return result, nil
}

func deleteMsg(tx *bolt.Tx, id string) error {
	m, err := getMsg(tx, id)
	if err != nil {
		return err
	}
	if err := tx.Bucket(bucketDue).Delete(dueKey(m.NextAttempt, id)); err != nil {
		return err
	}
	if err := adjustCounts(tx, m, nil); err != nil {
		return err
	}
	return dropMsg(tx, id)
}

// dropMsg removes a message's envelope and body, but not its due entry.
func dropMsg(tx *bolt.Tx, id string) error {
	if err := tx.Bucket(bucketMsg).Delete([]byte(id)); err != nil {
		return err
	}
	return dropBody(tx, id)
}

// dropBody removes every chunk of a body.
func dropBody(tx *bolt.Tx, id string) error {
	bodies := tx.Bucket(bucketBody)
	c := bodies.Cursor()
	prefix := append([]byte(id), 0)
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Seek(prefix) {
		var err error
		if v == nil && bodies.Bucket(k) != nil {
			err = bodies.DeleteBucket(bytes.Clone(k)) // a chunk in its own bucket
		} else {
			err = c.Delete()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Delete removes a message and its body.
func (s *Spool) Delete(id string) error {
	return s.write(func(tx *bolt.Tx) error { return deleteMsg(tx, id) })
}

// Body opens the stored body of a message. It reads one chunk per read
// transaction, so a slow consumer never pins the file's pages.
func (s *Spool) Body(id string) (io.ReadCloser, error) {
	var m *Message
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		m, err = getMsg(tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &bodyReader{s: s, id: id, size: m.Size}, nil
}

// bodyReader knows the stored size: when the message leaves the queue
// between two chunks (a delete during delivery), the missing chunk is an
// error, never an early EOF that would pass a truncated message on.
type bodyReader struct {
	s     *Spool
	id    string
	size  int64 // as stored with the envelope
	read  int64 // bytes fetched so far
	chunk int
	buf   []byte
	eof   bool
}

func (r *bodyReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.eof {
			return 0, io.EOF
		}
		err := r.s.view(func(tx *bolt.Tx) error {
			v := getChunk(tx.Bucket(bucketBody), bodyKey(r.id, r.chunk))
			if v == nil {
				if r.read != r.size {
					return fmt.Errorf("message %s: body ends after %d of %d bytes: %w", r.id, r.read, r.size, ErrNotFound)
				}
				r.eof = true
				return nil
			}
			r.buf = append(r.buf[:0], v...)
			r.read += int64(len(v))
			return nil
		})
		if err != nil {
			return 0, err
		}
		r.chunk++
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

func (r *bodyReader) Close() error { return nil }

// Backup writes a consistent copy of the whole spool to w while it runs.
func (s *Spool) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// CompactTo writes a compacted copy of the spool to a new file at dst.
func (s *Spool) CompactTo(dst string) error {
	out, err := bolt.Open(dst, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return err
	}
	err = s.guard(func() error { return bolt.Compact(out, s.db, 64<<20) })
	if err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// SetState durably stores a small value that is not a message: daemon
// state that must survive a restart, such as an upstream's rate-limit
// history.
func (s *Spool) SetState(key string, val []byte) error {
	k := append([]byte("state/"), key...)
	v := bytes.Clone(val)
	return s.write(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(k, v) })
}

// State returns what SetState stored under key, nil if nothing.
func (s *Spool) State(key string) ([]byte, error) {
	var out []byte
	err := s.view(func(tx *bolt.Tx) error {
		out = bytes.Clone(tx.Bucket(bucketMeta).Get(append([]byte("state/"), key...)))
		return nil
	})
	return out, err
}
