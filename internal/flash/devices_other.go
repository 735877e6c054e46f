//go:build !linux

package flash

// Devices lists nothing outside Linux; on macOS use `diskutil list`.
func Devices(opts ListOptions) ([]Device, error) { return nil, nil }
