package spec

import (
	"encoding/json"
	"fmt"
	iofs "io/fs"

	"github.com/zclconf/go-cty/cty"

	bfs "github.com/bakeryhq/bakery/internal/fs"
)

// Mode is a permission mode written as an octal string ("0644", "4755").
// A bare number is read as octal digits too (0644 and 644 both mean
// rw-r--r--).
type Mode iofs.FileMode

// FileMode converts to Go's representation (permission plus setuid,
// setgid and sticky bits).
func (m Mode) FileMode() iofs.FileMode { return iofs.FileMode(m) }

// Unix is the mode's low 12 bits as stored in an inode.
func (m Mode) Unix() uint32 { return bfs.UnixPerm(iofs.FileMode(m)) }

// String prints the mode in octal: "0644".
func (m Mode) String() string { return fmt.Sprintf("%04o", m.Unix()) }

// MarshalJSON writes the octal string.
func (m Mode) MarshalJSON() ([]byte, error) { return json.Marshal(m.String()) }

func (m *Mode) decodeCty(v cty.Value) error {
	s, err := asString(v)
	if err != nil {
		return fmt.Errorf(`want an octal mode string such as "0644", got %s`, v.Type().FriendlyName())
	}
	fm, err := bfs.ParseMode(s)
	if err != nil {
		return err
	}
	*m = Mode(fm)
	return nil
}
