package accounts

import (
	"errors"
	iofs "io/fs"
)

func isNotExist(err error) bool { return errors.Is(err, iofs.ErrNotExist) }
