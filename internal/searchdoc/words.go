// Package searchdoc reads what a search sees of an entry, for the server's
// index and the client's check of its results alike: the fields of an
// event envelope, read in one pass (Read), and the words of its strings
// (AppendTokens, AppendJSONValues, AppendText).
//
// The client's DocOf defines the search document of an entry, with
// encoding/json; Read is a fast path that reads the envelopes the server
// writes exactly as DocOf would, and gives up on anything else. There is
// one tokenizer, here: the index and the client cannot disagree on what a
// word is.
package searchdoc

import (
	"encoding/json"
	"strings"
	"unicode"
	"unicode/utf8"
)

// isTokenRune reports whether r is part of a word: letters, digits and
// private-use characters, as SQLite FTS5's unicode61 tokenizer counts them.
func isTokenRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsNumber(r) || unicode.Is(unicode.Co, r)
}

// AppendTokens appends the words of s, lower case, each followed by a space.
func AppendTokens(dst []byte, s string) []byte {
	in := false
	for _, r := range s {
		if r < utf8.RuneSelf {
			switch {
			case 'a' <= r && r <= 'z' || '0' <= r && r <= '9':
				dst = append(dst, byte(r))
				in = true
				continue
			case 'A' <= r && r <= 'Z':
				dst = append(dst, byte(r)+('a'-'A'))
				in = true
				continue
			}
		} else if isTokenRune(r) {
			dst = utf8.AppendRune(dst, unicode.ToLower(r))
			in = true
			continue
		}
		if in {
			dst = append(dst, ' ')
			in = false
		}
	}
	if in {
		dst = append(dst, ' ')
	}
	return dst
}

// AppendJSONValues appends the words of every string value (not object
// keys) and number in the valid JSON value v, as AppendTokens does.
func AppendJSONValues(dst []byte, v []byte) []byte {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == '"':
			start, esc := i, false
			for i++; i < len(v) && v[i] != '"'; i++ {
				if v[i] == '\\' {
					esc = true
					i++
				}
			}
			raw := v[start : i+1]
			j := i + 1
			for j < len(v) && (v[j] == ' ' || v[j] == '\t' || v[j] == '\n' || v[j] == '\r') {
				j++
			}
			if j < len(v) && v[j] == ':' {
				continue // a key
			}
			s := string(raw[1 : len(raw)-1])
			if esc {
				if err := json.Unmarshal(raw, &s); err != nil {
					continue
				}
			}
			dst = AppendTokens(dst, s)
		case c == '-' || '0' <= c && c <= '9':
			start := i
			for i+1 < len(v) && strings.IndexByte("0123456789+-.eE", v[i+1]) >= 0 {
				i++
			}
			dst = AppendTokens(dst, string(v[start:i+1]))
		}
	}
	return dst
}

// AppendText appends the text of a search document: the words of strs, in
// order (Fields.Strs), then those of the values of details and original
// (valid JSON, or empty), lower case and separated by one space, with no
// space after the last.
func AppendText(dst []byte, strs *[NumStrs]string, details, original []byte) []byte {
	start := len(dst)
	for _, s := range strs {
		dst = AppendTokens(dst, s)
	}
	dst = AppendJSONValues(dst, details)
	dst = AppendJSONValues(dst, original)
	if len(dst) > start {
		dst = dst[:len(dst)-1] // the last separator
	}
	return dst
}
