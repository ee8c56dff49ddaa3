package apikey

// SetScanLimit makes s read Scan results in pages of n items, so that tests
// reach pagination with a handful of items.
func SetScanLimit(s *DynamoStore, n int32) { s.scanLimit = n }
