// SPDX-License-Identifier: Apache-2.0

package client

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxTopicLen is the longest UTF-8 string MQTT can carry [MQTT-1.5.3].
const maxTopicLen = 65535

// ValidateTopic checks a topic name for PUBLISH: non-empty, valid UTF-8
// without NUL, at most 65535 bytes, no wildcards [MQTT-3.3.2-2].
func ValidateTopic(topic string) error {
	if err := validateUTF8(topic); err != nil {
		return err
	}
	if strings.ContainsAny(topic, "+#") {
		return fmt.Errorf("Invalid publish topic '%s', does it contain '+' or '#'?", topic)
	}
	return nil
}

// ValidateFilter checks a topic filter for SUBSCRIBE: '#' only as the whole
// last level, '+' only as a whole level [MQTT-4.7.1].
func ValidateFilter(filter string) error {
	if err := validateUTF8(filter); err != nil {
		return err
	}
	levels := strings.Split(filter, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("Invalid subscription topic '%s', are all '+' and '#' wildcards correct?", filter)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("Invalid subscription topic '%s', are all '+' and '#' wildcards correct?", filter)
		}
	}
	return nil
}

func validateUTF8(s string) error {
	switch {
	case s == "":
		return errors.New("empty topic")
	case len(s) > maxTopicLen:
		return fmt.Errorf("topic is %d bytes long, the maximum is %d", len(s), maxTopicLen)
	case !utf8.ValidString(s):
		return errors.New("Malformed UTF-8 in -t argument.")
	case strings.ContainsRune(s, 0):
		return errors.New("topic contains a NUL character")
	}
	return nil
}
