package adminapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve runs handler on a unix socket, as the daemon's admin server does.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestClient(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /queue", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`[{"id":"A1","from":"a@example.com","size":12,"arrived":"2026-11-26T23:00:00Z","attempts":1,"next_attempt":"2026-11-26T23:01:00Z","held":true,"recipients":[{"address":"b@example.org","status":"pending","last_error":"451 4.3.0 later"}]}]`))
	})
	mux.HandleFunc("POST /flush", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"scheduled":3}`))
	})
	mux.HandleFunc("POST /hold", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("id") != "A 1&x" {
			t.Errorf("id arrived as %q", r.URL.Query().Get("id"))
		}
		http.Error(w, "no message \"A 1&x\" in the queue", http.StatusNotFound)
	})
	c := NewClient(serve(t, mux))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	q, err := c.Queue(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(q) != 1 || q[0].ID != "A1" || !q[0].Held || q[0].Recipients[0].LastError != "451 4.3.0 later" || q[0].Arrived.IsZero() {
		t.Fatalf("queue = %+v", q)
	}
	if n, err := c.Flush(ctx); err != nil || n != 3 {
		t.Fatalf("flush = %d, %v", n, err)
	}
	err = c.Act(ctx, "hold", "A 1&x")
	if err == nil || !strings.Contains(err.Error(), "no message") {
		t.Fatalf("hold of a missing message: %v", err)
	}
	if _, err := c.Stats(ctx); err == nil {
		t.Fatal("a 404 for /stats gave no error")
	}
}

func TestClientNotRunning(t *testing.T) {
	c := NewClient(filepath.Join(t.TempDir(), "absent.sock"))
	if _, err := c.Queue(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("missing socket: %v, want ErrNotRunning", err)
	}
	// A socket file nobody listens on any more.
	sock := filepath.Join(t.TempDir(), "stale.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := NewClient(sock).Queue(context.Background()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("stale socket: %v, want ErrNotRunning", err)
	}
}

func TestClientHonoursContext(t *testing.T) {
	// A server that never answers.
	sock := filepath.Join(t.TempDir(), "mute.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := NewClient(sock).Queue(ctx); err == nil {
		t.Fatal("no error from a server that never answers")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("took %v despite the context's deadline", time.Since(start))
	}
}

// TestQueueEachStreamsAndReportsCutListing: elements reach fn as they
// are decoded, and a listing that ends before
// its closing bracket is an error, not a shorter queue.
func TestQueueEachStreamsAndReportsCutListing(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /queue", func(w http.ResponseWriter, r *http.Request) {
		err := WriteList(w, func(fn func(Message) error) error {
			for i := 0; i < 3; i++ {
				if err := fn(Message{ID: string(rune('A' + i)), Recipients: []Recipient{}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
	})
	c := NewClient(serve(t, mux))
	var got []string
	if err := c.QueueEach(context.Background(), 0, func(m Message) error { got = append(got, m.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "") != "ABC" {
		t.Fatalf("listing %v", got)
	}
	var buf strings.Builder
	if err := WriteList(&buf, func(fn func(Message) error) error { return fn(Message{ID: "A"}) }); err != nil {
		t.Fatal(err)
	}
	cut := buf.String()[:strings.LastIndex(buf.String(), "]")]
	n := 0
	if err := DecodeList(strings.NewReader(cut), func(Message) error { n++; return nil }); err == nil {
		t.Fatalf("a listing without its closing bracket decoded without error (%d messages)", n)
	}
	if err := DecodeList(strings.NewReader("[]\n"), func(Message) error { n++; return nil }); err != nil || n != 1 {
		t.Fatalf("empty listing: %v", err)
	}
}
