package mailhdr

// IsASCII reports whether s holds only 7-bit bytes: an address or a text
// that may travel without SMTPUTF8 or 8BITMIME. The standard library has
// no exported test for this.
func IsASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
