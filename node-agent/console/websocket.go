/*
Copyright The Vessel Authors.

Licensed under the Apache License, Version 2.0 (the "License");
you may not use this file except in compliance with the License.
You may obtain a copy of the License at

    http://www.apache.org/licenses/LICENSE-2.0

Unless required by applicable law or agreed to in writing, software
distributed under the License is distributed on an "AS IS" BASIS,
WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
See the License for the specific language governing permissions and
limitations under the License.
*/

package console

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"k8s.io/klog/v2"
)

// The remote-command WebSocket subprotocols served. v5 adds the CLOSE
// signal (a client ending its stdin) to v4; v4 carries a JSON status on
// the error channel, the unversioned protocols a plain message. The
// base64 variants are for browsers.
const (
	protocolV5       = "v5.channel.k8s.io"
	protocolV4       = "v4.channel.k8s.io"
	protocolV1       = "channel.k8s.io"
	protocolV4Base64 = "v4.base64.channel.k8s.io"
	protocolV1Base64 = "base64.channel.k8s.io"
)

// Channels of the remote-command protocols.
const (
	channelStdin  = 0
	channelStdout = 1
	channelError  = 3
	channelResize = 4
	channelClose  = 255 // v5: the client closed the channel in the next byte
)

const (
	// writeWait bounds one write to a client; a peer that takes longer is
	// gone.
	writeWait = 30 * time.Second
	// maxClientMessage bounds one message from a client (keystrokes,
	// pastes, resize events).
	maxClientMessage = 1 << 20
)

var websocketProtocols = []string{protocolV5, protocolV4, protocolV1, protocolV4Base64, protocolV1Base64}

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// wsConn is one upgraded remote-command WebSocket connection. It is
// implemented here rather than with k8s.io/streaming's wsstream, which
// cannot send pings: the server's pings are what keep a quiet console
// open through proxies that drop idle connections.
type wsConn struct {
	conn     *websocket.Conn
	protocol string
	base64   bool

	writeMu sync.Mutex
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request, session *Session, opts AttachOptions) {
	upgrader := websocket.Upgrader{
		Subprotocols:    websocketProtocols,
		ReadBufferSize:  32 << 10,
		WriteBufferSize: 32 << 10,
		// Only the vessel-apiserver reaches this server (mutual TLS), so a
		// browser's Origin, forwarded from the user's request, says nothing
		// about cross-site use here; the API server checked the user.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	conn, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader answered the client
	}
	c := &wsConn{conn: conn, protocol: conn.Subprotocol()}
	c.base64 = c.protocol == protocolV4Base64 || c.protocol == protocolV1Base64
	logger := klog.FromContext(r.Context())

	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stdinR, stdinW := io.Pipe()
	go func() {
		defer cancel()
		err := c.readLoop(stdinW, 3*s.cfg.PingInterval+10*time.Second)
		logger.V(4).Info("Console client connection ended", "err", err)
	}()
	go c.ping(ctx, s.cfg.PingInterval)

	// An empty stdout message tells the client the streams are ready.
	if err := c.write(channelStdout, nil); err != nil {
		conn.Close()
		return
	}
	// A session made read-only by the apiserver reads its input only to
	// tell its user why it goes nowhere.
	var stdin io.Reader = stdinR
	if opts.ReadOnly && opts.ReadOnlyReason == "" {
		stdin = nil
	}
	err = session.Serve(ctx, stdin, stdoutWriter{c})
	_ = stdinR.CloseWithError(io.EOF)
	c.writeStatus(err)
	c.writeMu.Lock()
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	c.writeMu.Unlock()
	conn.Close()
}

// readLoop reads client messages until the connection ends: stdin goes to
// stdinW, resize events are ignored (a serial console has no size). The
// read deadline moves on with every message, ping and pong: a client that
// answers no ping for deadPeer is gone.
func (c *wsConn) readLoop(stdinW *io.PipeWriter, deadPeer time.Duration) error {
	defer stdinW.Close()
	extend := func() { _ = c.conn.SetReadDeadline(time.Now().Add(deadPeer)) }
	extend()
	c.conn.SetReadLimit(maxClientMessage)
	c.conn.SetPongHandler(func(string) error { extend(); return nil })
	c.conn.SetPingHandler(func(data string) error {
		extend()
		err := c.conn.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(writeWait))
		var ne net.Error
		if errors.Is(err, websocket.ErrCloseSent) || (errors.As(err, &ne) && ne.Timeout()) {
			return nil
		}
		return err
	})
	stdinOpen := true
	for {
		_, msg, err := c.conn.ReadMessage()
		if err != nil {
			stdinW.CloseWithError(err)
			return err
		}
		extend()
		if len(msg) == 0 {
			continue
		}
		channel, payload := msg[0], msg[1:]
		if c.protocol == protocolV5 && channel == channelClose {
			if len(payload) == 1 && payload[0] == channelStdin && stdinOpen {
				stdinOpen = false
				stdinW.Close()
			}
			continue
		}
		if c.base64 {
			channel -= '0'
			if payload, err = base64.StdEncoding.DecodeString(string(payload)); err != nil {
				continue
			}
		}
		if channel == channelStdin && stdinOpen && len(payload) > 0 {
			if _, err := stdinW.Write(payload); err != nil {
				// The session stopped reading input; keep serving pings.
				stdinOpen = false
			}
		}
	}
}

// ping keeps the connection busy while the console is quiet.
func (c *wsConn) ping(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := c.conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(writeWait)); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				return
			}
		}
	}
}

// write sends data on a channel.
func (c *wsConn) write(channel byte, data []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(writeWait))
	if c.base64 {
		msg := make([]byte, 1+base64.StdEncoding.EncodedLen(len(data)))
		msg[0] = '0' + channel
		base64.StdEncoding.Encode(msg[1:], data)
		return c.conn.WriteMessage(websocket.TextMessage, msg)
	}
	w, err := c.conn.NextWriter(websocket.BinaryMessage)
	if err != nil {
		return err
	}
	if _, err := w.Write([]byte{channel}); err != nil {
		return err
	}
	if _, err := w.Write(data); err != nil {
		return err
	}
	return w.Close()
}

// writeStatus reports how the session ended on the error channel: a JSON
// metav1.Status in v4 and later, a plain message before, nothing on success.
func (c *wsConn) writeStatus(err error) {
	switch c.protocol {
	case protocolV5, protocolV4, protocolV4Base64:
		b, merr := json.Marshal(sessionStatus(err))
		if merr == nil {
			_ = c.write(channelError, b)
		}
	default:
		if err != nil {
			_ = c.write(channelError, []byte(err.Error()))
		}
	}
}

// stdoutWriter writes to the stdout channel.
type stdoutWriter struct{ c *wsConn }

func (w stdoutWriter) Write(p []byte) (int, error) {
	// Split large writes so one message stays well under clients' buffers.
	const chunk = 32 << 10
	for off := 0; off < len(p); off += chunk {
		if err := w.c.write(channelStdout, p[off:min(off+chunk, len(p))]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}
