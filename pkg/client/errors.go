// SPDX-License-Identifier: Apache-2.0

package client

import (
	"crypto/x509"
	"fmt"
	"strings"
	"time"
)

// Stage names a step of connecting, for error messages.
type Stage string

// Connection stages, in order.
const (
	StageDial      Stage = "TCP connect"
	StageTLS       Stage = "TLS handshake"
	StageWebSocket Stage = "WebSocket handshake"
	StageConnack   Stage = "CONNACK"
)

// TimeoutError means connecting took longer than Config.ConnectTimeout.
type TimeoutError struct {
	Addr  string
	Stage Stage // the step that did not finish
	After time.Duration
	// TLS reports whether the connection used TLS.
	TLS bool
}

func (e *TimeoutError) Error() string {
	if e.Stage == StageConnack {
		return fmt.Sprintf("no CONNACK from %s within %s", e.Addr, e.After)
	}
	return fmt.Sprintf("%s to %s timed out after %s", e.Stage, e.Addr, e.After)
}

// Timeout reports true: it is a timeout (net.Error style).
func (e *TimeoutError) Timeout() bool { return true }

// ClosedError means the broker closed the connection (or reset it)
// before sending CONNACK.
type ClosedError struct {
	Addr  string
	Stage Stage
	TLS   bool // the connection used TLS
	// LooksTLS is set when the broker answered plain MQTT with TLS bytes:
	// the port speaks TLS.
	LooksTLS bool
	Err      error
}

func (e *ClosedError) Error() string {
	s := fmt.Sprintf("the broker at %s closed the connection during the %s", e.Addr, e.Stage)
	if e.Err != nil {
		s += " (" + e.Err.Error() + ")"
	}
	return s
}

func (e *ClosedError) Unwrap() error { return e.Err }

// TLSErrorKind classifies a failed TLS handshake.
type TLSErrorKind int

// TLS failure kinds.
const (
	TLSOther              TLSErrorKind = iota
	TLSUnknownAuthority                // the broker's certificate chain is not signed by a trusted CA
	TLSNameMismatch                    // the certificate is not valid for the host name used
	TLSExpired                         // the certificate expired or is not valid yet
	TLSNotTLS                          // the port does not speak TLS
	TLSClientCertNeeded                // the broker wants a client certificate
	TLSClientCertRejected              // the broker did not accept our client certificate
	TLSVersion                         // no common TLS version
)

// TLSError is a failed TLS handshake with the facts needed to explain it.
type TLSError struct {
	Addr string
	Kind TLSErrorKind
	// ServerName is the name the certificate was checked against.
	ServerName string
	// CertNames are the names the broker's certificate is valid for.
	CertNames []string
	// Subject and Issuer describe the broker's certificate, when one was seen.
	Subject, Issuer string
	// NotAfter is the certificate's expiry, for TLSExpired.
	NotAfter time.Time
	Err      error
}

func (e *TLSError) Error() string {
	return fmt.Sprintf("TLS handshake with %s: %v", e.Addr, e.Err)
}

func (e *TLSError) Unwrap() error { return e.Err }

// HandshakeError is a failed WebSocket upgrade: the server answered the
// HTTP request with something other than 101 Switching Protocols.
type HandshakeError struct {
	URL    string
	Status string // HTTP status line, e.g. "404 Not Found"; empty when the reply was not HTTP
	Err    error
}

func (e *HandshakeError) Error() string {
	if e.Status != "" {
		return fmt.Sprintf("WebSocket handshake with %s failed: HTTP %s", e.URL, e.Status)
	}
	return fmt.Sprintf("WebSocket handshake with %s failed: %v", e.URL, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// BindError means the connection could not use the local address of
// Config.BindAddress.
type BindError struct {
	Addr string
	Err  error
}

func (e *BindError) Error() string {
	return fmt.Sprintf("cannot connect from local address %s: %v", e.Addr, e.Err)
}

func (e *BindError) Unwrap() error { return e.Err }

// certNames lists what a certificate is valid for: DNS and IP SANs, or
// its common name when it has no SANs.
func certNames(c *x509.Certificate) []string {
	var n []string
	n = append(n, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		n = append(n, ip.String())
	}
	if len(n) == 0 && c.Subject.CommonName != "" {
		n = append(n, c.Subject.CommonName)
	}
	return n
}

func dn(n fmt.Stringer) string {
	s := n.String()
	if s == "" {
		return "(empty name)"
	}
	return strings.TrimSpace(s)
}
