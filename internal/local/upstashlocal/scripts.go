package upstashlocal

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
	"sync"
)

// maxMappedScripts bounds the original→forwarded SHA-1 map. When it is full
// the map is cleared; a forgotten mapping costs a client one NOSCRIPT reply
// and one EVAL, which is what any client does after SCRIPT FLUSH.
const maxMappedScripts = 4096

// allowKeyLocking is Upstash's shebang flag that plain Redis rejects.
const allowKeyLocking = "allow-key-locking"

// scriptRewriter makes scripts written for Upstash runnable on the backend
// while clients keep addressing them by the SHA-1 of the text they sent.
type scriptRewriter struct {
	// commentShebang turns the whole shebang line into a Lua comment (the
	// embedded store's Lua cannot parse shebangs); otherwise only the
	// allow-key-locking flag is dropped and Redis validates the rest.
	commentShebang bool

	mu  sync.Mutex
	fwd map[string]string // lowercase hex SHA-1 of the original → of the forwarded script
}

func newScriptRewriter(commentShebang bool) *scriptRewriter {
	return &scriptRewriter{commentShebang: commentShebang, fwd: make(map[string]string)}
}

func sha1Hex(s string) string {
	sum := sha1.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// rewriteSource returns the script to forward and whether it differs from
// src. Only a first line starting with "#!" is ever touched, and it is
// replaced by exactly one line, so line numbers in Lua errors still match
// the client's script.
func (sr *scriptRewriter) rewriteSource(src string) (string, bool) {
	if !strings.HasPrefix(src, "#!") {
		return src, false
	}
	line, rest, hasRest := strings.Cut(src, "\n")
	var newLine string
	if sr.commentShebang {
		newLine = "--" + line[2:]
	} else {
		newLine = dropFlag(line, allowKeyLocking)
		if newLine == line {
			return src, false
		}
	}
	if hasRest {
		return newLine + "\n" + rest, true
	}
	return newLine, true
}

// dropFlag removes flag from a "#!lua flags=a,b" shebang line. A flags=
// option left empty is removed; everything else is kept as written so Redis
// judges it.
func dropFlag(line, flag string) string {
	fields := strings.Fields(strings.TrimSuffix(line, "\r"))
	changed := false
	out := fields[:0:0]
	for _, f := range fields {
		v, ok := strings.CutPrefix(f, "flags=")
		if !ok {
			out = append(out, f)
			continue
		}
		var kept []string
		for fl := range strings.SplitSeq(v, ",") {
			if fl == flag {
				changed = true
				continue
			}
			kept = append(kept, fl)
		}
		if len(kept) > 0 && !(len(kept) == 1 && kept[0] == "") {
			out = append(out, "flags="+strings.Join(kept, ","))
		}
	}
	if !changed {
		return line
	}
	return strings.Join(out, " ")
}

// record remembers that a client's script with SHA-1 orig runs on the
// backend as fwd.
func (sr *scriptRewriter) record(orig, fwd string) {
	sr.mu.Lock()
	defer sr.mu.Unlock()
	if _, ok := sr.fwd[orig]; !ok && len(sr.fwd) >= maxMappedScripts {
		clear(sr.fwd)
	}
	sr.fwd[orig] = fwd
}

// lookup returns the backend SHA-1 for a client's SHA-1, if mapped.
func (sr *scriptRewriter) lookup(sha string) (string, bool) {
	sr.mu.Lock()
	defer sr.mu.Unlock()
	fwd, ok := sr.fwd[strings.ToLower(sha)]
	return fwd, ok
}

// fixup adjusts a backend reply to what the client expects after a rewrite.
type fixup func(r reply) reply

// rewriteCommand returns the command to send to the backend and, when the
// reply needs adjusting, a fixup for it. upper is cmd[0] in upper case.
func (sr *scriptRewriter) rewriteCommand(cmd []string, upper string) ([]string, fixup) {
	switch upper {
	case "EVAL", "EVAL_RO":
		if len(cmd) < 2 {
			return cmd, nil
		}
		src, changed := sr.rewriteSource(cmd[1])
		if !changed {
			return cmd, nil
		}
		orig, fwd := sha1Hex(cmd[1]), sha1Hex(src)
		sr.record(orig, fwd)
		out := append([]string{cmd[0], src}, cmd[2:]...)
		return out, errorSHAFixup(fwd, orig)
	case "EVALSHA", "EVALSHA_RO":
		if len(cmd) < 2 {
			return cmd, nil
		}
		fwd, ok := sr.lookup(cmd[1])
		if !ok {
			return cmd, nil
		}
		out := append([]string{cmd[0], fwd}, cmd[2:]...)
		return out, errorSHAFixup(fwd, strings.ToLower(cmd[1]))
	case "SCRIPT":
		if len(cmd) < 2 {
			return cmd, nil
		}
		switch strings.ToUpper(cmd[1]) {
		case "LOAD":
			if len(cmd) != 3 {
				return cmd, nil
			}
			src, changed := sr.rewriteSource(cmd[2])
			if !changed {
				return cmd, nil
			}
			orig, fwd := sha1Hex(cmd[2]), sha1Hex(src)
			sr.record(orig, fwd)
			return []string{cmd[0], cmd[1], src}, func(r reply) reply {
				if s, ok := r.value.(string); ok && r.err == "" && s == fwd {
					r.value = orig
				}
				return r
			}
		case "EXISTS":
			out := append([]string(nil), cmd...)
			for i := 2; i < len(out); i++ {
				if fwd, ok := sr.lookup(out[i]); ok {
					out[i] = fwd
				}
			}
			return out, nil
		}
	}
	return cmd, nil
}

// errorSHAFixup puts the client's SHA-1 back into Lua error messages, which
// name the script that ran.
func errorSHAFixup(fwd, orig string) fixup {
	return func(r reply) reply {
		if r.err != "" {
			r.err = strings.ReplaceAll(r.err, fwd, orig)
		}
		return r
	}
}
