package bootfiles

import (
	"bytes"
	"strings"
)

// RenderCmdline returns cmdline.txt for one machine: the image's single
// line with extra arguments appended on the same line (the kernel reads
// only the first line). With nothing to add, the base comes back unchanged,
// byte for byte.
func RenderCmdline(base []byte, extra ...string) []byte {
	var args []string
	for _, e := range extra {
		if e = strings.TrimSpace(strings.ReplaceAll(strings.ReplaceAll(e, "\r", " "), "\n", " ")); e != "" {
			args = append(args, e)
		}
	}
	if len(args) == 0 {
		return base
	}
	line := base
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	line = bytes.TrimRight(line, " \t\r")
	var b bytes.Buffer
	b.Write(line)
	for _, a := range args {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a)
	}
	b.WriteByte('\n')
	return b.Bytes()
}

// RenderConfig returns config.txt for one machine: the image's file with
// the machine's additions in a trailing [all] section, so that they apply
// whatever conditional section the base ends in. With nothing to add, the
// base comes back unchanged.
func RenderConfig(base []byte, appendText string) []byte {
	add := strings.TrimRight(strings.ReplaceAll(appendText, "\r\n", "\n"), "\n")
	if strings.TrimSpace(add) == "" {
		return base
	}
	var b bytes.Buffer
	b.Write(base)
	if len(base) > 0 && base[len(base)-1] != '\n' {
		b.WriteByte('\n')
	}
	b.WriteString("\n# added by bakery serve for this machine\n[all]\n")
	b.WriteString(add)
	b.WriteByte('\n')
	return b.Bytes()
}

// IPXEScript is the script an iPXE client gets: kernel, optional initrd and
// the command line.
func IPXEScript(kernelURL, initrdURL, cmdline string) string {
	var b strings.Builder
	b.WriteString("#!ipxe\n")
	b.WriteString("kernel " + kernelURL)
	if initrdURL != "" {
		// The initrd= argument lets an EFI-stub kernel find the initrd.
		b.WriteString(" initrd=initrd")
	}
	if c := strings.TrimSpace(cmdline); c != "" {
		b.WriteString(" " + c)
	}
	b.WriteString("\n")
	if initrdURL != "" {
		b.WriteString("initrd --name initrd " + initrdURL + "\n")
	}
	b.WriteString("boot\n")
	return b.String()
}
