package flash

// ListOptions configure Devices.
type ListOptions struct {
	// All includes loop, device-mapper, RAM and empty devices.
	All bool
	Sys SysPaths
}

// Device is a disk as `bakery devices` lists it.
type Device struct {
	Path        string   `json:"path"`
	Name        string   `json:"name"`
	Size        int64    `json:"size"`
	Model       string   `json:"model,omitempty"`
	Vendor      string   `json:"vendor,omitempty"`
	Serial      string   `json:"serial,omitempty"`
	Transport   string   `json:"transport,omitempty"`
	Removable   bool     `json:"removable"`
	ReadOnly    bool     `json:"read_only,omitempty"`
	Mounted     bool     `json:"mounted"`
	Mountpoints []string `json:"mountpoints,omitempty"`
	// System is true for the disk holding the running system (/, /boot or
	// swap).
	System      bool     `json:"system"`
	Partitions  []string `json:"partitions,omitempty"`
	BackingFile string   `json:"backing_file,omitempty"`
}
