package upstash

import (
	"errors"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestValueAccessors(t *testing.T) {
	type out struct {
		Str      string
		StrErr   error
		Int      int64
		IntErr   error
		Float    float64
		FloatErr error
		Bytes    []byte
		BytesErr error
		Len      int
		ArrErr   error
		IsNil    bool
		Type     Type
	}
	tests := []struct {
		name string
		v    Value
		want out
	}{
		{"nil", Value{}, out{StrErr: ErrNil, IntErr: ErrNil, FloatErr: ErrNil, BytesErr: ErrNil, ArrErr: ErrNil, IsNil: true, Type: TypeNil}},
		{"numeric string", StringValue("-42"), out{Str: "-42", Int: -42, Float: -42, Bytes: []byte("-42"), ArrErr: ErrWrongType, Type: TypeString}},
		{"float string", StringValue("3.25"), out{Str: "3.25", IntErr: ErrWrongType, Float: 3.25, Bytes: []byte("3.25"), ArrErr: ErrWrongType, Type: TypeString}},
		{"inf string", StringValue("inf"), out{Str: "inf", IntErr: ErrWrongType, Float: math.Inf(1), Bytes: []byte("inf"), ArrErr: ErrWrongType, Type: TypeString}},
		{"text", StringValue("abc"), out{Str: "abc", IntErr: ErrWrongType, FloatErr: ErrWrongType, Bytes: []byte("abc"), ArrErr: ErrWrongType, Type: TypeString}},
		{"binary", StringValue("\x00\xff"), out{Str: "\x00\xff", IntErr: ErrWrongType, FloatErr: ErrWrongType, Bytes: []byte{0, 0xff}, ArrErr: ErrWrongType, Type: TypeString}},
		{"overflowing integer string", StringValue("9223372036854775808"), out{Str: "9223372036854775808", IntErr: ErrWrongType, Float: 9223372036854775808, Bytes: []byte("9223372036854775808"), ArrErr: ErrWrongType, Type: TypeString}},
		{"integer", IntValue(7), out{Str: "7", Int: 7, Float: 7, Bytes: []byte("7"), ArrErr: ErrWrongType, Type: TypeInt}},
		{"integral float", FloatValue(2), out{Str: "2", Int: 2, Float: 2, Bytes: []byte("2"), ArrErr: ErrWrongType, Type: TypeFloat}},
		{"fractional float", FloatValue(2.5), out{Str: "2.5", IntErr: ErrWrongType, Float: 2.5, Bytes: []byte("2.5"), ArrErr: ErrWrongType, Type: TypeFloat}},
		{"huge float", FloatValue(1e19), out{Str: "1e+19", IntErr: ErrWrongType, Float: 1e19, Bytes: []byte("1e+19"), ArrErr: ErrWrongType, Type: TypeFloat}},
		{"array", ArrayValue(IntValue(1), Value{}), out{StrErr: ErrWrongType, IntErr: ErrWrongType, FloatErr: ErrWrongType, BytesErr: ErrWrongType, Len: 2, Type: TypeArray}},
		{"empty array", ArrayValue(), out{StrErr: ErrWrongType, IntErr: ErrWrongType, FloatErr: ErrWrongType, BytesErr: ErrWrongType, Type: TypeArray}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got out
			got.Str, got.StrErr = tt.v.String()
			got.Int, got.IntErr = tt.v.Int()
			got.Float, got.FloatErr = tt.v.Float()
			got.Bytes, got.BytesErr = tt.v.Bytes()
			arr, arrErr := tt.v.Array()
			got.Len, got.ArrErr = len(arr), arrErr
			got.IsNil, got.Type = tt.v.IsNil(), tt.v.Type()
			if tt.v.Type() == TypeArray && arr == nil {
				t.Errorf("Array() of an array returned a nil slice")
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b error) bool { return errors.Is(a, b) || errors.Is(b, a) })); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestValueEqualAndAny(t *testing.T) {
	a := ArrayValue(IntValue(1), StringValue("x"), ArrayValue(Value{}, FloatValue(0.5)))
	b := ArrayValue(IntValue(1), StringValue("x"), ArrayValue(Value{}, FloatValue(0.5)))
	if !a.Equal(b) {
		t.Errorf("%#v not Equal to %#v", a, b)
	}
	for _, other := range []Value{ArrayValue(IntValue(1)), StringValue("1"), IntValue(1), ArrayValue(IntValue(1), StringValue("y"), ArrayValue(Value{}, FloatValue(0.5)))} {
		if a.Equal(other) {
			t.Errorf("%#v Equal to %#v", a, other)
		}
	}
	if StringValue("").Equal(Value{}) {
		t.Error("empty string Equal to nil")
	}
	if ArrayValue().Equal(Value{}) {
		t.Error("empty array Equal to nil")
	}
	want := []any{int64(1), "x", []any{nil, 0.5}}
	if diff := cmp.Diff(want, a.Any()); diff != "" {
		t.Errorf("Any (-want +got):\n%s", diff)
	}
	if got, want := a.GoString(), `upstash.ArrayValue(upstash.IntValue(1), upstash.StringValue("x"), upstash.ArrayValue(upstash.Value{}, upstash.FloatValue(0.5)))`; got != want {
		t.Errorf("GoString = %s, want %s", got, want)
	}
}

func TestErrorKindString(t *testing.T) {
	got := []string{}
	for k := KindAuth; k <= KindCanceled+1; k++ {
		got = append(got, k.String())
	}
	want := []string{"auth", "command", "server", "transport", "timeout", "malformed", "canceled", "ErrorKind(8)"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
