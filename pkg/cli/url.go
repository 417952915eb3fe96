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

// BrokerURL is a parsed -L URL:
//
//	mqtt|mqtts|ws|wss://[user[:password]@]host[:port]/topic
//
// As in mosquitto, nothing is percent-decoded, the user information ends
// at the first '@' and the password starts after its first ':'. Unlike
// mosquitto, an IPv6 address may be given in brackets.
type BrokerURL struct {
	Scheme    string           // lower case: mqtt, mqtts, ws or wss
	Transport client.Transport // client.TCP or client.WebSocket
	TLS       bool             // mqtts and wss
	Username  string
	Password  string
	HasUser   bool // the URL has user information
	HasPass   bool // the user information has a ':' (the password may be empty)
	Host      string
	Port      int // 0 when the URL names none
	Topic     string
}

// Error texts are mosquitto's, so scripts that grep for them keep working.
var (
	errURLScheme = errors.New("unsupported URL scheme.")
	errURLTopic  = errors.New("Invalid URL for -L argument specified - topic missing.")
)

// ParseURL parses a -L URL.
func ParseURL(s string) (*BrokerURL, error) {
	i := strings.Index(s, "://")
	if i < 0 {
		return nil, errURLScheme
	}
	u := &BrokerURL{Scheme: strings.ToLower(s[:i]), Transport: client.TCP}
	switch u.Scheme {
	case "mqtt":
	case "mqtts":
		u.TLS = true
	case "ws":
		u.Transport = client.WebSocket
	case "wss":
		u.Transport, u.TLS = client.WebSocket, true
	default:
		return nil, errURLScheme
	}
	rest := s[i+3:]
	slash := strings.IndexByte(rest, '/')
	if slash < 0 || slash == len(rest)-1 {
		return nil, errURLTopic
	}
	authority, topic := rest[:slash], rest[slash+1:]
	u.Topic = topic
	if at := strings.IndexByte(authority, '@'); at >= 0 {
		u.HasUser = true
		info := authority[:at]
		authority = authority[at+1:]
		if c := strings.IndexByte(info, ':'); c >= 0 {
			u.Username, u.Password, u.HasPass = info[:c], info[c+1:], true
		} else {
			u.Username = info
		}
	}
	host, port, err := splitHostPort(authority)
	if err != nil {
		return nil, err
	}
	if host == "" {
		return nil, errors.New("Invalid URL for -L argument specified - host missing.")
	}
	u.Host, u.Port = host, port
	return u, nil
}

// splitHostPort splits host[:port] or [ipv6][:port]. The port, when
// present, must be a number from 1 to 65535.
func splitHostPort(s string) (string, int, error) {
	host, portStr := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, fmt.Errorf("Invalid URL for -L argument specified - missing ']' in host %q.", s)
		}
		host = s[1:end]
		if net.ParseIP(host) == nil {
			return "", 0, fmt.Errorf("Invalid URL for -L argument specified - %q is not an IPv6 address.", host)
		}
		after := s[end+1:]
		if after != "" {
			if after[0] != ':' {
				return "", 0, fmt.Errorf("Invalid URL for -L argument specified - unexpected %q after the host.", after)
			}
			portStr = after[1:]
		}
	} else if c := strings.IndexByte(s, ':'); c >= 0 {
		host, portStr = s[:c], s[c+1:]
	}
	if portStr == "" {
		return host, 0, nil
	}
	p, err := strconv.Atoi(portStr)
	if err != nil || p < 1 || p > 65535 {
		return "", 0, fmt.Errorf("Invalid port given: %s", portStr)
	}
	return host, p, nil
}

// String formats u back into a -L URL, with the password shown as "***"
// when hide is set.
func (u *BrokerURL) String() string { return u.format(true) }

func (u *BrokerURL) format(hide bool) string {
	var b strings.Builder
	b.WriteString(u.Scheme + "://")
	if u.HasUser {
		b.WriteString(u.Username)
		if u.HasPass {
			b.WriteByte(':')
			if hide {
				b.WriteString("***")
			} else {
				b.WriteString(u.Password)
			}
		}
		b.WriteByte('@')
	}
	if strings.Contains(u.Host, ":") {
		b.WriteString("[" + u.Host + "]")
	} else {
		b.WriteString(u.Host)
	}
	if u.Port != 0 {
		b.WriteString(":" + strconv.Itoa(u.Port))
	}
	b.WriteString("/" + u.Topic)
	return b.String()
}
