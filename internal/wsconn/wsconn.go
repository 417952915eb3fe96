// SPDX-License-Identifier: Apache-2.0

// Package wsconn carries an MQTT byte stream over a WebSocket, for the
// broker's WebSocket listener and the client's WebSocket dialer alike:
// MQTT travels in binary messages only [MQTT-6.0.0-1], and a packet may
// span messages while a message may hold several packets [MQTT-6.0.0-2].
package wsconn

import (
	"errors"
	"io"

	"github.com/gorilla/websocket"
)

// Read reads the byte stream across the binary messages of ws into p.
// cur holds the message being read between calls (nil between messages).
// A text message ends the stream with text. When closed is not nil, it
// stands for a close frame received between messages (the peer hung up);
// other errors of ws are returned as they are. Calls must not overlap.
func Read(ws *websocket.Conn, cur *io.Reader, p []byte, text, closed error) (int, error) {
	for {
		if *cur == nil {
			op, r, err := ws.NextReader()
			if err != nil {
				var ce *websocket.CloseError
				if closed != nil && errors.As(err, &ce) {
					return 0, closed
				}
				return 0, err
			}
			if op != websocket.BinaryMessage {
				return 0, text
			}
			*cur = r
		}
		n, err := (*cur).Read(p)
		if errors.Is(err, io.EOF) {
			*cur = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

// Write sends p as one binary message on ws.
func Write(ws *websocket.Conn, p []byte) (int, error) {
	if err := ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}
