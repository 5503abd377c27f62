// Command go-yamux is a reference yamux peer for peerwarden's interop spec
// (specs/yamux-go-interop.spec.ts), built on HashiCorp's Go yamux, the reference
// implementation of the yamux spec. It speaks plain yamux over one TCP connection.
//
// Build (Debian's golang-go and golang-github-hashicorp-yamux-dev, offline):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOPROXY=off go build -o peer .
//
// Usage:
//
//	peer -mode server -listen 127.0.0.1:0    prints "LISTEN host:port", accepts ONE connection
//	peer -mode client -connect host:port     dials, then runs a yamux client session
//
// The process exits with status 0 when the session ends (the peer closed or reset the
// connection), 1 on a setup error, and also exits when its stdin reaches EOF, so it never
// outlives the process that started it. Diagnostics go to stderr.
//
// Control protocol: every stream the peer opens starts with one command line (at most 255
// bytes, ending in '\n'); what follows depends on the command:
//
//	ECHO\n             echo every byte after the line; close (FIN) after the peer's FIN.
//	SHA256\n           read to the peer's FIN, then reply "<byte count> <sha256 hex>\n" and FIN:
//	                   the reply travels after the peer's half-close.
//	PING\n             ping the peer (yamux Ping frame), reply "PONG <rtt ns>\n" and FIN.
//	OPEN <n> <size>\n  open n streams towards the peer at once; on each, send <size> random
//	                   bytes while reading back <size> bytes (the peer echoes), then FIN. Reply
//	                   one line per stream, "STREAM <id> <sha256 sent> <sha256 echoed>\n"
//	                   (or "ERROR <id> <text>\n"), then FIN. 1 <= n <= 1000, 0 <= size <= 64 MiB.
//
// A failed command replies "ERROR <text>\n" and closes the stream.
//
// Known limit of the 2019 snapshot Debian ships: once a stream has sent its FIN, Read returns
// EOF as soon as the receive buffer is momentarily empty, so the Go side cannot read a reply
// after its own half-close. OPEN therefore reads the whole echo before sending its FIN.
package main

import (
	"bufio"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

const (
	maxCommandLine = 256
	maxOpenCount   = 1000
	maxOpenSize    = 64 << 20
)

func main() {
	mode := flag.String("mode", "", "server or client")
	listen := flag.String("listen", "127.0.0.1:0", "server: address to listen on")
	connect := flag.String("connect", "", "client: address to dial")
	flag.Parse()

	// The parent closes our stdin (or dies): nothing is left to serve.
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()

	conn, err := establish(*mode, *listen, *connect)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-yamux:", err)
		os.Exit(1)
	}
	if tcp, ok := conn.(*net.TCPConn); ok {
		_ = tcp.SetNoDelay(true)
	}

	config := yamux.DefaultConfig()
	config.EnableKeepAlive = false // pings are on demand (PING), not on a timer
	config.LogOutput = os.Stderr
	var session *yamux.Session
	if *mode == "server" {
		session, err = yamux.Server(conn, config)
	} else {
		session, err = yamux.Client(conn, config)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "go-yamux:", err)
		os.Exit(1)
	}

	for {
		stream, err := session.AcceptStream()
		if err != nil {
			// The session ended: the peer closed or reset the connection.
			_ = session.Close()
			return
		}
		go serve(session, stream)
	}
}

// establish returns the one TCP connection of this run.
func establish(mode, listen, connect string) (net.Conn, error) {
	switch mode {
	case "server":
		listener, err := net.Listen("tcp", listen)
		if err != nil {
			return nil, err
		}
		defer listener.Close() // one connection only
		fmt.Printf("LISTEN %s\n", listener.Addr())
		return listener.Accept()
	case "client":
		if connect == "" {
			return nil, errors.New("-connect host:port is required in client mode")
		}
		return net.Dial("tcp", connect)
	default:
		return nil, fmt.Errorf("-mode must be server or client, got %q", mode)
	}
}

// serve runs the command that opens a stream the peer opened.
func serve(session *yamux.Session, stream *yamux.Stream) {
	defer stream.Close()
	reader := bufio.NewReaderSize(stream, maxCommandLine)
	line, err := reader.ReadSlice('\n')
	if err != nil {
		fmt.Fprintf(stream, "ERROR no command line: %v\n", err)
		return
	}
	fields := strings.Fields(string(line))
	if len(fields) == 0 {
		fmt.Fprintln(stream, "ERROR empty command")
		return
	}
	switch fields[0] {
	case "ECHO":
		// io.Copy from the bufio.Reader also echoes bytes read past the command line.
		if _, err := io.Copy(stream, reader); err != nil {
			fmt.Fprintln(os.Stderr, "go-yamux: echo:", err)
		}
	case "SHA256":
		hash := sha256.New()
		count, err := io.Copy(hash, reader)
		if err != nil {
			fmt.Fprintf(stream, "ERROR %v\n", err)
			return
		}
		fmt.Fprintf(stream, "%d %s\n", count, hex.EncodeToString(hash.Sum(nil)))
	case "PING":
		rtt, err := session.Ping()
		if err != nil {
			fmt.Fprintf(stream, "ERROR %v\n", err)
			return
		}
		fmt.Fprintf(stream, "PONG %d\n", rtt.Nanoseconds())
	case "OPEN":
		count, size, err := parseOpen(fields)
		if err != nil {
			fmt.Fprintf(stream, "ERROR %v\n", err)
			return
		}
		openStreams(session, stream, count, size)
	default:
		fmt.Fprintf(stream, "ERROR unknown command %q\n", fields[0])
	}
}

func parseOpen(fields []string) (int, int, error) {
	if len(fields) != 3 {
		return 0, 0, errors.New("usage: OPEN <count> <size>")
	}
	count, err := strconv.Atoi(fields[1])
	if err != nil || count < 1 || count > maxOpenCount {
		return 0, 0, fmt.Errorf("count must be in [1, %d]", maxOpenCount)
	}
	size, err := strconv.Atoi(fields[2])
	if err != nil || size < 0 || size > maxOpenSize {
		return 0, 0, fmt.Errorf("size must be in [0, %d]", maxOpenSize)
	}
	return count, size, nil
}

// openStreams opens count streams at once and reports each on the control stream.
func openStreams(session *yamux.Session, control *yamux.Stream, count, size int) {
	var wait sync.WaitGroup
	var reportLock sync.Mutex
	report := func(format string, args ...interface{}) {
		reportLock.Lock()
		defer reportLock.Unlock()
		fmt.Fprintf(control, format, args...)
	}
	for i := 0; i < count; i++ {
		wait.Add(1)
		go func() {
			defer wait.Done()
			id, sent, echoed, err := exchange(session, size)
			if err != nil {
				report("ERROR %d %v\n", id, err)
				return
			}
			report("STREAM %d %s %s\n", id, sent, echoed)
		}()
	}
	wait.Wait()
}

// exchange opens one stream, sends size random bytes while reading size bytes back, then
// sends FIN; it returns the stream ID and the SHA-256 (hex) of what was sent and received.
// Reading runs alongside writing: a peer that echoes stops reading when we stop reading.
func exchange(session *yamux.Session, size int) (uint32, string, string, error) {
	stream, err := session.OpenStream()
	if err != nil {
		return 0, "", "", err
	}
	defer stream.Close()
	_ = stream.SetDeadline(time.Now().Add(30 * time.Second)) // never hang the control stream
	payload := make([]byte, size)
	if _, err := rand.Read(payload); err != nil {
		return stream.StreamID(), "", "", err
	}
	echoedHash := sha256.New()
	readErr := make(chan error, 1)
	go func() {
		_, err := io.CopyN(echoedHash, stream, int64(size))
		readErr <- err
	}()
	if _, err := stream.Write(payload); err != nil {
		return stream.StreamID(), "", "", err
	}
	if err := <-readErr; err != nil {
		return stream.StreamID(), "", "", err
	}
	sent := sha256.Sum256(payload)
	return stream.StreamID(), hex.EncodeToString(sent[:]), hex.EncodeToString(echoedHash.Sum(nil)), nil
}
