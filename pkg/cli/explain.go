// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// explainedError is a connection failure worded for a person: what went
// wrong and which flag fixes it. It keeps the original error for
// errors.As and the exit code.
type explainedError struct {
	msg string
	err error
}

func (e *explainedError) Error() string { return e.msg }
func (e *explainedError) Unwrap() error { return e.err }

// explain rewords connection errors from pkg/client with hints that
// name our flags. Other errors are returned unchanged.
func (o *ConnOptions) explain(err error) error {
	var (
		tle *client.TLSError
		te  *client.TimeoutError
		ce  *client.ClosedError
		he  *client.HandshakeError
		ee  *explainedError
		dns *net.DNSError
		be  *client.BindError
	)
	switch {
	case errors.As(err, &ee):
		return err
	case errors.As(err, &be):
		return &explainedError{msg: fmt.Sprintf("cannot connect from local address %s (-A): %v.", be.Addr, be.Err), err: err}
	case errors.As(err, &dns):
		why := dns.Err
		if dns.IsNotFound {
			why = "no such host"
		}
		return &explainedError{msg: fmt.Sprintf("cannot find the broker's host %q: %s. Check -h (or -L, MQTT_HOST, the profile).", dns.Name, why), err: err}
	case errors.As(err, &tle):
		return &explainedError{msg: o.explainTLS(tle), err: err}
	case errors.As(err, &te):
		return &explainedError{msg: o.explainTimeout(te), err: err}
	case errors.As(err, &ce):
		return &explainedError{msg: o.explainClosed(ce), err: err}
	case errors.As(err, &he):
		return &explainedError{msg: o.explainWS(he), err: err}
	}
	return err
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return p
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return h
}

// tlsOffHint says how to turn TLS off, naming what turned it on.
func (o *ConnOptions) tlsOffHint() string {
	switch from := o.eff.tlsFrom; {
	case from == "-p 8883":
		return "port 8883 turns TLS on: add --no-tls for plain MQTT on port 8883"
	case strings.HasPrefix(from, "-L "):
		scheme := strings.TrimPrefix(from, "-L ")
		plain := "mqtt://"
		if scheme == "wss://" {
			plain = "ws://"
		}
		return "use " + plain + " instead of " + scheme + " in -L"
	case strings.HasPrefix(from, "--"):
		return "drop " + from + " to connect without TLS"
	case from != "":
		return "connect without TLS (" + from + " turns it on)"
	}
	return "connect without TLS"
}

func (o *ConnOptions) explainTLS(e *client.TLSError) string {
	switch e.Kind {
	case client.TLSUnknownAuthority:
		issuer := ""
		if e.Issuer != "" {
			issuer = fmt.Sprintf(" (issued by %q)", e.Issuer)
		}
		hint := "pass the certificate of the CA that signed it with --cafile FILE"
		if o.CAFile != "" || o.CAPath != "" {
			hint = "pass the certificate of the CA that signed it with --cafile FILE, or check that you are talking to the right broker"
		}
		return fmt.Sprintf("TLS: the certificate of the broker at %s%s is not signed by %s: %s.",
			e.Addr, issuer, o.eff.caFrom, hint)
	case client.TLSNameMismatch:
		names := strings.Join(e.CertNames, ", ")
		if names == "" {
			names = "no names"
		}
		fix := "add --insecure to skip the name check (the certificate chain is still verified)"
		if len(e.CertNames) > 0 && !strings.HasPrefix(e.CertNames[0], "*") {
			fix = fmt.Sprintf("connect with -h %s, or %s", e.CertNames[0], fix)
		}
		return fmt.Sprintf("TLS: the certificate of the broker at %s is valid for %s, not for %q: %s.", e.Addr, names, e.ServerName, fix)
	case client.TLSExpired:
		when := ""
		if !e.NotAfter.IsZero() {
			when = " (valid until " + e.NotAfter.UTC().Format("2006-01-02 15:04 MST") + ")"
		}
		return fmt.Sprintf("TLS: the certificate of the broker at %s has expired or is not valid yet%s: check this computer's clock, or ask for the certificate to be renewed.", e.Addr, when)
	case client.TLSNotTLS:
		tlsPort := "its TLS port (usually 8883)"
		if o.eff.transport == client.WebSocket {
			// Secure WebSocket ports vary (443, 8084, 8884, ...); 8883
			// is MQTT over TLS without WebSockets.
			tlsPort = "its secure WebSocket (wss) port"
		}
		return fmt.Sprintf("the broker at %s does not speak TLS on port %s (it dropped the TLS handshake): %s, or use %s.",
			e.Addr, portOf(e.Addr), o.tlsOffHint(), tlsPort)
	case client.TLSClientCertNeeded:
		return fmt.Sprintf("TLS: the broker at %s requires a client certificate: pass --cert FILE and --key FILE.", e.Addr)
	case client.TLSClientCertRejected:
		return fmt.Sprintf("TLS: the broker at %s rejected the client certificate %s (%v): is it signed by a CA the broker trusts, and still valid?", e.Addr, o.eff.certFile, e.Err)
	case client.TLSVersion:
		return fmt.Sprintf("TLS: the broker at %s and this client share no TLS version (%v); --tls-version sets the lowest version allowed.", e.Addr, e.Err)
	}
	return fmt.Sprintf("TLS handshake with %s failed: %v", e.Addr, e.Err)
}

func (o *ConnOptions) tlsOnHint(port string) string {
	return fmt.Sprintf("if port %s is a TLS port, add --cafile FILE (or --tls-use-os-certs for a broker with a public certificate)", port)
}

func (o *ConnOptions) explainTimeout(e *client.TimeoutError) string {
	limit := " (--connect-timeout sets the limit)"
	switch e.Stage {
	case client.StageConnack:
		if !e.TLS && o.eff.transport == client.TCP {
			return fmt.Sprintf("no CONNACK from %s within %s: the broker accepted the connection but did not answer; %s%s.",
				e.Addr, e.After, o.tlsOnHint(portOf(e.Addr)), limit)
		}
		return fmt.Sprintf("no CONNACK from %s within %s: the broker accepted the connection but did not answer%s.", e.Addr, e.After, limit)
	case client.StageDial:
		return fmt.Sprintf("could not reach %s within %s: is the host up and the port open (no firewall dropping packets)?%s", e.Addr, e.After, limit)
	case client.StageTLS:
		return fmt.Sprintf("TLS handshake with %s did not finish within %s: is port %s a TLS port?%s", e.Addr, e.After, portOf(e.Addr), limit)
	case client.StageWebSocket:
		return fmt.Sprintf("WebSocket handshake with %s did not finish within %s: is port %s a WebSocket port?%s", e.Addr, e.After, portOf(e.Addr), limit)
	}
	return e.Error() + limit
}

func (o *ConnOptions) explainClosed(e *client.ClosedError) string {
	port := portOf(e.Addr)
	switch {
	case e.LooksTLS:
		return fmt.Sprintf("the broker at %s answered with TLS: port %s is a TLS port; add --cafile FILE (or --tls-use-os-certs for a broker with a public certificate).", e.Addr, port)
	case !e.TLS && o.eff.transport == client.TCP:
		return fmt.Sprintf("the broker at %s closed the connection before answering CONNECT; %s.", e.Addr, o.tlsOnHint(port))
	}
	return e.Error()
}

func (o *ConnOptions) explainWS(e *client.HandshakeError) string {
	if e.Status != "" {
		return fmt.Sprintf("%s: check the WebSocket path (--ws-path, default %s) and that port %s is the broker's WebSocket port.",
			e.Error(), client.DefaultWSPath, wsPort(e.URL))
	}
	other := "Plain MQTT ports need mqtt:// instead of ws://."
	if strings.HasPrefix(e.URL, "wss://") {
		other = "MQTT over TLS ports need mqtts:// instead of wss://."
	}
	return fmt.Sprintf("WebSocket handshake with %s failed (%v): is port %s a WebSocket listener? %s",
		e.URL, e.Err, wsPort(e.URL), other)
}

// wsPort returns the port of a ws:// or wss:// URL.
func wsPort(u string) string {
	rest := u[strings.Index(u, "://")+3:]
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		rest = rest[:i]
	}
	p := portOf(rest)
	if _, err := strconv.Atoi(p); err != nil {
		return hostOf(rest)
	}
	return p
}
