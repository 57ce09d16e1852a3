// Package maildrop is the on-disk hand-off between the sendmail shim and
// the daemon while the daemon is not running: the shim writes each message
// with its envelope into one file of the maildrop folder, and the daemon
// imports and removes those files when it runs.
//
// # Folder
//
// The folder has mode 1733, like Postfix's maildrop: every user may create
// files in it, nobody but its owner may list it, and the sticky bit keeps
// users from removing each other's files. File names carry 128 random bits,
// so a user cannot find, let alone open, another user's message.
//
// # File format
//
// A file is written under a temporary name (starting with "."), given
// mode 0644, synced, then renamed to its final name and the rename
// committed (see commitName), so a final name never holds a partial
// message. Final names are
//
//	<16 hex digits: Unix time in nanoseconds>-<32 hex digits: random>
//
// which sorts oldest first. The content is three parts:
//
//	outbox-maildrop 1 <20 decimal digits: body length in bytes>\n
//	<the envelope as one line of JSON>\n
//	<the message, header and body, as submitted>
//
// The body length is written last, over a placeholder, so that a file cut
// short (a full disk, a crash of a non-journalling file system) is detected
// by Read rather than imported as a shorter message.
//
// # Trust
//
// The envelope is written by an unprivileged user. Read therefore replaces
// the UID recorded in the file by the owner of the file, and clears User
// when the two disagree; everything else in the envelope must be validated
// by the importer like an SMTP submission.
//
// Users may also leave things in the folder that are not files the shim
// wrote: a FIFO (opening it would block the daemon), a symbolic link or a
// hard link to a file the daemon could read but they cannot, a folder.
// Read opens without following links and without blocking, and refuses
// anything but a regular file with one link, with an error wrapping
// ErrUnsafe; Discard removes such an entry.
package maildrop

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/outbox-mta/outbox/internal/durable"
)

// Envelope is what the shim knows about a message besides its content.
type Envelope struct {
	From       string    `json:"from"`                // envelope sender; "" is the null sender <>
	Recipients []string  `json:"recipients"`          // as given: addresses or local names
	Notify     string    `json:"notify,omitempty"`    // -N value as given, e.g. "failure,delay"
	Ret        string    `json:"ret,omitempty"`       // -R: "full", "hdrs" or ""
	EnvID      string    `json:"envid,omitempty"`     // -V
	BodyType   string    `json:"body_type,omitempty"` // -B or BODY=: "7BIT", "8BITMIME" or ""
	SMTPUTF8   bool      `json:"smtputf8,omitempty"`  // the message needs SMTPUTF8 (RFC 6531): UTF-8 addresses or header fields
	UID        int       `json:"uid"`                 // invoking user; Read sets it from the file owner
	User       string    `json:"user,omitempty"`      // login name of UID
	Time       time.Time `json:"time"`                // when the shim was called
}

const (
	magic = "outbox-maildrop 1 "
	// sizeDigits is the width of the body length field.
	sizeDigits = 20
	// maxEnvelope bounds the JSON line, so that a corrupt file cannot make
	// Read allocate without limit.
	maxEnvelope = 4 << 20
	// tempPrefix starts the names of files still being written.
	tempPrefix = ".tmp-"
)

// ErrMalformed is wrapped by the errors Read returns for a file that is not
// a complete maildrop file.
var ErrMalformed = errors.New("maildrop: malformed file")

// ErrUnsafe is wrapped by the errors Read returns for an entry that is not
// a regular file with exactly one link.
var ErrUnsafe = errors.New("maildrop: not a plain file")

// Setup creates dir if needed and gives it mode 1733. The daemon calls it
// at start-up.
func Setup(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	const mode = os.ModeDir | os.ModeSticky | 0o733
	if st, err := os.Stat(dir); err == nil && st.Mode()&(mode|os.ModeSetuid|os.ModeSetgid|os.ModePerm) == mode {
		// Already right: a daemon that does not own the folder (the
		// package made it) could not change its mode anyway.
		return nil
	}
	// Chmod, not the mode of MkdirAll: the umask would take bits off.
	return os.Chmod(dir, os.ModeSticky|0o733)
}

// Write stores env and the content read from body in a new file of dir and
// returns the file's final name (without dir). The file is durable when
// Write returns nil; on error no file is left under a final name.
func Write(dir string, env *Envelope, body io.Reader) (name string, err error) {
	envJSON, err := json.Marshal(env)
	if err != nil {
		return "", fmt.Errorf("maildrop: encoding envelope: %w", err)
	}
	rnd, err := randomHex(16)
	if err != nil {
		return "", err
	}
	tmp := filepath.Join(dir, tempPrefix+rnd)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	// 0644 set with fchmod, whatever the caller's umask (077 would leave
	// 0600): the daemon, running as another user, must read the file. The
	// folder's mode (not listable) and the random name keep other users
	// from finding it.
	if err = f.Chmod(0o644); err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	head := make([]byte, 0, len(magic)+sizeDigits+len(envJSON)+2)
	head = append(head, magic...)
	head = append(head, strings.Repeat("0", sizeDigits)...)
	head = append(head, '\n')
	head = append(head, envJSON...)
	head = append(head, '\n')
	w := bufio.NewWriterSize(f, 64<<10)
	if _, err = w.Write(head); err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	n, err := io.Copy(w, body)
	if err != nil {
		return "", fmt.Errorf("maildrop: writing message: %w", err)
	}
	if err = w.Flush(); err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	size := fmt.Sprintf("%0*d", sizeDigits, n)
	if _, err = f.WriteAt([]byte(size), int64(len(magic))); err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	if err = f.Sync(); err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	name = fmt.Sprintf("%016x-%s", uint64(time.Now().UnixNano()), rnd)
	if err = os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		return "", fmt.Errorf("maildrop: %w", err)
	}
	serr := commitName(dir, f)
	cerr := f.Close()
	if serr != nil || cerr != nil {
		// The file is complete under its final name but perhaps not yet
		// durable; removing it is the only way not to claim it is.
		os.Remove(filepath.Join(dir, name))
		return "", fmt.Errorf("maildrop: %w", errors.Join(serr, cerr))
	}
	return name, nil
}

// commitName makes the rename of f into dir durable. Syncing the folder
// needs a descriptor of it, and opening a folder needs read permission,
// which mode 1733 gives only to the daemon's user: root and that user
// sync the folder, everyone else syncs the whole file system with
// syncfs(2), which commits the new directory entry too. syncfs also
// writes out other programs' dirty data, so it can take longer; it is the
// price of the daemon being down, and BenchmarkCommit measures it
// (on ext4 in a VM shared with other builds: folder fsync 1.5 ms,
// syncfs 2.0 ms per new file).
func commitName(dir string, f *os.File) error {
	err := durable.SyncDir(dir)
	if !errors.Is(err, fs.ErrPermission) {
		return err
	}
	return syncFS(f)
}

// syncFS commits the file system that holds f.
func syncFS(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Syncfs(int(fd)) }); err != nil {
		return err
	}
	if serr != nil {
		return os.NewSyscallError("syncfs", serr)
	}
	return nil
}

// List returns the final names in dir, oldest first, whatever their file
// type: Read tells the importer which ones are not plain files. Files still
// being written and anything else that is not a maildrop name are skipped.
func List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if validName(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// validName reports whether name has the shape of a final name.
func validName(name string) bool {
	if len(name) != 16+1+32 || name[16] != '-' {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if i != 16 && !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// Read opens the maildrop file at path and returns its envelope and a
// reader of the message, which the caller must close. A file that is
// truncated, has trailing bytes or has a malformed envelope gives an error
// wrapping ErrMalformed.
//
// An entry that is not a regular file with exactly one link gives an error
// wrapping ErrUnsafe, without blocking: Read never follows a symbolic
// link, never waits on a FIFO and never opens a device.
func Read(path string) (*Envelope, io.ReadCloser, error) {
	f, st, err := open(path)
	if err != nil {
		return nil, nil, err
	}
	env, offset, size, err := parse(bufio.NewReaderSize(f, 64<<10))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if offset+size != st.Size() {
		f.Close()
		return nil, nil, fmt.Errorf("%s: %w: message is %d bytes, header says %d", path, ErrMalformed, st.Size()-offset, size)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		if int(sys.Uid) != env.UID {
			env.User = ""
		}
		env.UID = int(sys.Uid)
	}
	return env, &body{Reader: io.NewSectionReader(f, offset, size), f: f}, nil
}

// open opens path for reading if it is a regular file with one link. The
// type is checked twice: with Lstat before opening, so that no device is
// ever opened (opening one can have effects), and on the open descriptor,
// as the user who owns the entry can replace it in between. O_NONBLOCK
// keeps a FIFO put there in between from blocking the open; O_NOFOLLOW
// refuses a symbolic link.
func open(path string) (*os.File, os.FileInfo, error) {
	lst, err := os.Lstat(path)
	if err != nil {
		return nil, nil, err
	}
	if err := plain(path, lst); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOFOLLOW, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) {
			return nil, nil, fmt.Errorf("%s: %w: a symbolic link", path, ErrUnsafe)
		}
		return nil, nil, err
	}
	st, err := f.Stat()
	if err == nil {
		err = plain(path, st)
	}
	if err == nil && !os.SameFile(lst, st) {
		err = fmt.Errorf("%s: %w: replaced while being opened", path, ErrUnsafe)
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// plain checks that st is a regular file with one link.
func plain(path string, st os.FileInfo) error {
	if !st.Mode().IsRegular() {
		return fmt.Errorf("%s: %w: file type %v", path, ErrUnsafe, st.Mode().Type())
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: %w: no owner information", path, ErrUnsafe)
	}
	if sys.Nlink != 1 {
		// A hard link made by a user to a file the daemon can read and
		// the user cannot.
		return fmt.Errorf("%s: %w: %d hard links", path, ErrUnsafe, sys.Nlink)
	}
	return nil
}

// Discard removes an entry Read refused as unsafe, without following it:
// a link is removed, not what it points to, and a folder with what it
// holds.
func Discard(path string) error {
	st, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if st.IsDir() {
		err = os.RemoveAll(path)
		if err != nil {
			// A folder holding a user's files that the daemon's user
			// may not delete: renamed (the folder's owner may, in the
			// same folder) to a name List skips, so that it is not
			// met again every round.
			err = os.Rename(path, filepath.Join(filepath.Dir(path), ".unsafe-"+filepath.Base(path)))
		}
	} else {
		err = os.Remove(path)
	}
	if err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(path))
}

type body struct {
	io.Reader
	f *os.File
}

func (b *body) Close() error { return b.f.Close() }

// parse reads the first two lines and returns the envelope, the offset of
// the message and its announced length.
func parse(r *bufio.Reader) (*Envelope, int64, int64, error) {
	first := make([]byte, len(magic)+sizeDigits+1)
	if _, err := io.ReadFull(r, first); err != nil {
		return nil, 0, 0, fmt.Errorf("%w: short first line", ErrMalformed)
	}
	if !bytes.HasPrefix(first, []byte(magic)) || first[len(first)-1] != '\n' {
		return nil, 0, 0, fmt.Errorf("%w: not a maildrop file (bad first line)", ErrMalformed)
	}
	digits := string(first[len(magic) : len(magic)+sizeDigits])
	for _, c := range digits {
		if c < '0' || c > '9' {
			return nil, 0, 0, fmt.Errorf("%w: bad length field %q", ErrMalformed, digits)
		}
	}
	size, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || size < 0 {
		return nil, 0, 0, fmt.Errorf("%w: bad length field %q", ErrMalformed, digits)
	}
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxEnvelope {
			return nil, 0, 0, fmt.Errorf("%w: envelope longer than %d bytes", ErrMalformed, maxEnvelope)
		}
		if err == nil {
			break
		}
		if err != bufio.ErrBufferFull {
			return nil, 0, 0, fmt.Errorf("%w: envelope line not terminated", ErrMalformed)
		}
	}
	var env Envelope
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, 0, 0, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	if rest := bytes.TrimSpace(line[dec.InputOffset():]); len(rest) != 0 {
		return nil, 0, 0, fmt.Errorf("%w: trailing bytes after the envelope", ErrMalformed)
	}
	if len(env.Recipients) == 0 {
		return nil, 0, 0, fmt.Errorf("%w: envelope has no recipients", ErrMalformed)
	}
	return &env, int64(len(first) + len(line)), size, nil
}

// Remove deletes the file at path and syncs its folder, so that an imported
// message does not come back after a crash.
func Remove(path string) error {
	if err := os.Remove(path); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(path))
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("maildrop: random name: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// PrivateDir makes dir a folder that only the calling process's user can
// enter (mode 0700, owned by that user), for the files the importer sets
// aside. Whatever else is found there (checked with Lstat: a symbolic
// link is not followed) is renamed to dir plus ".unsafe-" and a time
// stamp, and its name returned, for the caller to log; a fresh folder is
// then made.
func PrivateDir(dir string) (moved string, err error) {
	st, err := os.Lstat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return "", err
	case privateDir(st):
		return "", nil
	default:
		moved = fmt.Sprintf("%s.unsafe-%d", dir, time.Now().UnixNano())
		if err := os.Rename(dir, moved); err != nil {
			return "", fmt.Errorf("maildrop: setting aside %s: %w", dir, err)
		}
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return moved, err
	}
	// Chmod: the umask could have taken bits off, not added any, but
	// state the mode rather than rely on it.
	if err := os.Chmod(dir, 0o700); err != nil {
		return moved, err
	}
	return moved, durable.SyncDir(filepath.Dir(dir))
}

func privateDir(st os.FileInfo) bool {
	sys, ok := st.Sys().(*syscall.Stat_t)
	return ok && st.IsDir() && st.Mode()&(os.ModePerm|os.ModeSticky|os.ModeSetuid|os.ModeSetgid) == 0o700 &&
		int(sys.Uid) == os.Geteuid()
}

// Reject moves the file at path into dir (made with PrivateDir), keeping
// its name. When dir is on another file system the file is copied (mode
// 0600) and then removed.
func Reject(path, dir string) error {
	dst := filepath.Join(dir, filepath.Base(path))
	err := os.Rename(path, dst)
	if errors.Is(err, syscall.EXDEV) {
		// The copy's folder entry is on disk before the original goes:
		// a crash in between leaves two copies, never none.
		err = copyFile(path, dst)
		if err == nil {
			err = durable.SyncDir(dir)
		}
		if err == nil {
			err = os.Remove(path)
		}
	}
	if err != nil {
		return err
	}
	if err := durable.SyncDir(dir); err != nil {
		return err
	}
	return durable.SyncDir(filepath.Dir(path))
}

func copyFile(src, dst string) error {
	in, _, err := open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
	}
	return err
}
