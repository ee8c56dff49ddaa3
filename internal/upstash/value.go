package upstash

import (
	"fmt"
	"math"
	"strconv"
)

// Type is the type of a decoded reply value.
type Type uint8

// Reply types. Redis' RESP2 replies map onto them: bulk and simple strings
// are TypeString, integers TypeInt, null bulk strings and null arrays TypeNil,
// arrays TypeArray. TypeFloat only appears when Upstash sends a JSON number
// with a fraction or exponent (Redis itself sends floats as strings).
const (
	TypeNil Type = iota
	TypeString
	TypeInt
	TypeFloat
	TypeArray
)

// String returns "nil", "string", "integer", "float" or "array".
func (t Type) String() string {
	switch t {
	case TypeNil:
		return "nil"
	case TypeString:
		return "string"
	case TypeInt:
		return "integer"
	case TypeFloat:
		return "float"
	case TypeArray:
		return "array"
	}
	return "Type(" + strconv.Itoa(int(t)) + ")"
}

// Value is one decoded reply. The zero Value is a nil reply.
//
// A Value is immutable once returned and safe to share between goroutines.
// The accessors never panic: asking for the wrong type returns an error
// wrapping ErrWrongType, asking anything but IsNil of a nil reply returns
// ErrNil.
type Value struct {
	typ Type
	str string  // TypeString: the bytes (base64 already decoded)
	num int64   // TypeInt: the integer; TypeFloat: math.Float64bits
	arr []Value // TypeArray: the elements (nil for an empty array)
}

// StringValue returns a string reply holding s. It is for fakes in tests of
// code that consumes replies.
func StringValue(s string) Value { return Value{typ: TypeString, str: s} }

// IntValue returns an integer reply holding n.
func IntValue(n int64) Value { return Value{typ: TypeInt, num: n} }

// FloatValue returns a float reply holding f.
func FloatValue(f float64) Value { return Value{typ: TypeFloat, num: int64(math.Float64bits(f))} }

// ArrayValue returns an array reply of the given elements (an empty array
// when none are given). It keeps vs; do not modify it afterwards.
func ArrayValue(vs ...Value) Value { return Value{typ: TypeArray, arr: vs} }

// Type returns the type of the reply.
func (v Value) Type() Type { return v.typ }

// IsNil reports whether the reply is nil (GET of a missing key, a Lua nil).
func (v Value) IsNil() bool { return v.typ == TypeNil }

// String returns a string reply. Integers and floats are formatted in
// base 10, as Redis would send them as strings. Nil returns ErrNil; an array
// returns an error wrapping ErrWrongType.
//
// String does not implement fmt.Stringer (it also returns an error).
func (v Value) String() (string, error) {
	switch v.typ {
	case TypeString:
		return v.str, nil
	case TypeInt:
		return strconv.FormatInt(v.num, 10), nil
	case TypeFloat:
		return strconv.FormatFloat(v.float(), 'g', -1, 64), nil
	case TypeNil:
		return "", ErrNil
	}
	return "", v.wrongType(TypeString)
}

// Bytes returns a string reply as a new byte slice (which the caller owns).
// In base64 mode it holds exactly the bytes Redis stored, binary or not.
// Conversions and errors are those of String.
func (v Value) Bytes() ([]byte, error) {
	s, err := v.String()
	if err != nil {
		return nil, err
	}
	return []byte(s), nil
}

// Int returns an integer reply. A string holding a base-10 integer (Redis
// sends counters read with GET that way) and a float with an integral value
// in range are converted; anything else returns an error wrapping
// ErrWrongType. Nil returns ErrNil.
func (v Value) Int() (int64, error) {
	switch v.typ {
	case TypeInt:
		return v.num, nil
	case TypeString:
		n, err := strconv.ParseInt(v.str, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: string is not a 64-bit base-10 integer", ErrWrongType)
		}
		return n, nil
	case TypeFloat:
		f := v.float()
		if f != math.Trunc(f) || f < math.MinInt64 || f >= math.MaxInt64 {
			return 0, fmt.Errorf("%w: float is not a 64-bit integer", ErrWrongType)
		}
		return int64(f), nil
	case TypeNil:
		return 0, ErrNil
	}
	return 0, v.wrongType(TypeInt)
}

// Float returns a float reply. Integers are converted; a string is parsed
// (Redis sends floats as strings, e.g. from INCRBYFLOAT; "inf" and "-inf"
// are accepted). Anything else returns an error wrapping ErrWrongType. Nil
// returns ErrNil.
func (v Value) Float() (float64, error) {
	switch v.typ {
	case TypeFloat:
		return v.float(), nil
	case TypeInt:
		return float64(v.num), nil
	case TypeString:
		f, err := strconv.ParseFloat(v.str, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: string is not a number", ErrWrongType)
		}
		return f, nil
	case TypeNil:
		return 0, ErrNil
	}
	return 0, v.wrongType(TypeFloat)
}

// Array returns the elements of an array reply. The slice shares memory
// with v: do not modify it. An empty array returns a zero-length slice and
// no error; a nil reply returns ErrNil; other types an error wrapping
// ErrWrongType.
func (v Value) Array() ([]Value, error) {
	switch v.typ {
	case TypeArray:
		if v.arr == nil {
			return []Value{}, nil
		}
		return v.arr, nil
	case TypeNil:
		return nil, ErrNil
	}
	return nil, v.wrongType(TypeArray)
}

// Any returns the reply as plain Go values: nil, string, int64, float64 or
// []any (recursively). It allocates; it is meant for tests and debugging.
func (v Value) Any() any {
	switch v.typ {
	case TypeString:
		return v.str
	case TypeInt:
		return v.num
	case TypeFloat:
		return v.float()
	case TypeArray:
		out := make([]any, len(v.arr))
		for i, e := range v.arr {
			out[i] = e.Any()
		}
		return out
	}
	return nil
}

// Equal reports whether v and w are the same reply (same type and contents;
// floats compare by bits). go-cmp uses it.
func (v Value) Equal(w Value) bool {
	if v.typ != w.typ || v.str != w.str || v.num != w.num || len(v.arr) != len(w.arr) {
		return false
	}
	for i := range v.arr {
		if !v.arr[i].Equal(w.arr[i]) {
			return false
		}
	}
	return true
}

// GoString renders the reply for %#v and test failures, e.g.
// upstash.ArrayValue(upstash.IntValue(1), upstash.StringValue("a")).
func (v Value) GoString() string {
	switch v.typ {
	case TypeString:
		return "upstash.StringValue(" + strconv.Quote(v.str) + ")"
	case TypeInt:
		return "upstash.IntValue(" + strconv.FormatInt(v.num, 10) + ")"
	case TypeFloat:
		return "upstash.FloatValue(" + strconv.FormatFloat(v.float(), 'g', -1, 64) + ")"
	case TypeArray:
		s := "upstash.ArrayValue("
		for i, e := range v.arr {
			if i > 0 {
				s += ", "
			}
			s += e.GoString()
		}
		return s + ")"
	}
	return "upstash.Value{}"
}

func (v Value) float() float64 { return math.Float64frombits(uint64(v.num)) }

func (v Value) wrongType(want Type) error {
	return fmt.Errorf("%w: got %s, want %s", ErrWrongType, v.typ, want)
}
