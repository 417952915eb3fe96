// SPDX-License-Identifier: Apache-2.0

package client

import (
	"bytes"
	"io"
	"testing"
)

// FuzzFrameGuard feeds arbitrary "broker" bytes, in reads of any size,
// through the guard under sub's MQTT libraries: it must never panic, and
// when it lets everything through the bytes are unchanged.
func FuzzFrameGuard(f *testing.F) {
	for _, seed := range [][]byte{
		{0x20, 0x03, 0x00, 0x00, 0x00, 0x90, 0x03, 0x00, 0x01, 0x00}, // CONNACK 5, SUBACK
		{0x30, 0x05, 0x00, 0x01, 't', 'h', 'i', 0xd0, 0x00},          // PUBLISH, PINGRESP
		{0x20, 0xff, 0xff, 0xff, 0x7f},                               // CONNACK announcing 256 MB
		{0x30, 0xff, 0xff, 0xff, 0x7f, 0x00},                         // PUBLISH announcing 256 MB
		{0xd0, 0x80, 0x80, 0x80, 0x80, 0x01},                         // malformed remaining length
	} {
		f.Add(seed, uint8(1), uint16(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8, limit uint16) {
		g := newFrameGuard(&chunkConn{chunks: split(bytes.Clone(data), int(chunk)+1)}, int(limit))
		got, err := io.ReadAll(g)
		if err == nil && !bytes.Equal(got, data) {
			t.Fatalf("the guard changed the bytes: %x became %x", data, got)
		}
		if err != nil && g.err() == nil && g.lost() == nil {
			t.Fatalf("read failed (%v) but the guard does not say why", err)
		}
	})
}
