"""The emulated board's REPL on its UART, as MicroPython 1.11's ``pyexec.c`` runs it once the
script is done (or when there is none): the friendly REPL (the banner, ``>>> ``, a line at a
time) and the raw REPL that install and probe drive (Ctrl-A: ``raw REPL; CTRL-B to exit``, then
``>``; code up to Ctrl-D; ``OK``, its output, ``\\x04``, the traceback, ``\\x04``; Ctrl-B back to the
friendly REPL, which prints the banner again; Ctrl-D on an empty line soft-resets).

Code runs in CPython with the board's stand-in modules; ``import os`` is the board's ``uos``. A
soft reset clears the REPL's variables and prints the banner; it does not run main.py again."""

from __future__ import annotations

import builtins
import codeop
import os
import select
import sys
import traceback

from .state import EmulatorDone

CTRL_A, CTRL_B, CTRL_C, CTRL_D, CTRL_E = 1, 2, 3, 4, 5
RAW_BANNER = "raw REPL; CTRL-B to exit\r\n"


class _Wire:
    """print() in REPL code: cooked onto the UART (\\n -> \\r\\n, as mp_hal_stdout_tx_strn_cooked)
    and copied to the console log."""

    def __init__(self, repl, console):
        self.repl, self.console = repl, console

    def write(self, text):
        self.console.write(text)
        self.repl.out(text.replace("\n", "\r\n"))
        return len(text)

    def flush(self):
        self.console.flush()


class Repl:
    def __init__(self, board, fd: int):
        self.board, self.fd = board, fd
        self.pending = bytearray()
        self.globals = self._fresh()

    # -- the wire -------------------------------------------------------------------------------
    def out(self, text) -> None:
        data = text.encode("utf-8", "replace") if isinstance(text, str) else bytes(text)
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except OSError:
                raise EmulatorDone("the UART's other end closed") from None
            view = view[n:]

    def getc(self) -> int:
        while not self.pending:
            r, _, _ = select.select([self.fd], [], [], 0.5)
            if not r:
                continue
            try:
                data = os.read(self.fd, 4096)
            except OSError:
                data = b""
            if not data:
                raise EmulatorDone("the UART's other end closed")
            self.pending += data
        c = self.pending[0]
        del self.pending[0]
        return c

    # -- running code ---------------------------------------------------------------------------
    def _fresh(self) -> dict:
        bi = dict(builtins.__dict__)
        bi.update(open=self.board.open, bytearray=self.board.bytearray_type, __import__=self._import)
        return {"__name__": "__main__", "__builtins__": bi}

    @staticmethod
    def _import(name, globals=None, locals=None, fromlist=(), level=0):
        if level == 0 and name in ("os", "uos"):  # the board's uos, not the host's
            return builtins.__import__("uos", globals, locals, fromlist, level)
        return builtins.__import__(name, globals, locals, fromlist, level)

    def _traceback(self, e: BaseException) -> str:
        """MicroPython's form: the frames of the code typed in (the firmware's C functions have none)."""
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == "<stdin>"]
        lines = ["Traceback (most recent call last):"]
        lines += ['  File "<stdin>", line %d, in %s' % (f.lineno, f.name) for f in frames]
        msg = str(e)
        lines.append("%s: %s" % (type(e).__name__, msg) if msg else type(e).__name__)
        return "\r\n".join(lines) + "\r\n"

    def run(self, source: str, mode: str) -> str:
        """Run ``source``; its output goes onto the wire; returns the traceback text ('' if none)."""
        old = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = _Wire(self, sys.__stdout__)
        try:
            code = compile(source, "<stdin>", mode) if mode == "exec" else source
            exec(code, self.globals)
            return ""
        except SystemExit:
            return ""
        except Exception as e:
            return self._traceback(e)
        finally:
            sys.stdout, sys.stderr = old

    # -- the two REPLs --------------------------------------------------------------------------
    def banner(self) -> None:
        self.out('%s\r\nType "help()" for more information.\r\n' % self.board.build.get("banner", "MicroPython"))

    def readline(self, prompt: str) -> tuple[str, int | None]:
        """A line typed at the friendly REPL (echoed), or the control key that ended it."""
        self.out(prompt)
        line = bytearray()
        while True:
            c = self.getc()
            if c == CTRL_C or (CTRL_A <= c <= CTRL_E and not line):
                return "", c
            if c == ord("\r"):
                self.out("\r\n")
                return line.decode("utf-8", "replace"), None
            if c in (8, 127):
                if line:
                    del line[-1]
                    self.out("\b \b")
            elif c >= 32:
                line.append(c)
                self.out(bytes([c]))

    def friendly(self) -> str:
        self.banner()
        while True:
            line, ctrl = self.readline(">>> ")
            if ctrl == CTRL_A:
                self.out("\r\n")
                return "raw"
            if ctrl == CTRL_B:
                self.out("\r\n")
                self.banner()
                continue
            if ctrl == CTRL_D:
                self.out("\r\n")
                return "reset"
            if ctrl is not None:  # Ctrl-C (and Ctrl-E: paste mode is not emulated)
                self.out("\r\n")
                continue
            source = line
            try:
                code = codeop.compile_command(source, "<stdin>", "single")
                while code is None:  # a compound statement: more lines, up to an empty one
                    more, ctrl = self.readline("... ")
                    if ctrl is not None:
                        break
                    source += "\n" + more
                    code = (
                        codeop.compile_command(source, "<stdin>", "single")
                        if more
                        else compile(source + "\n", "<stdin>", "single")
                    )
            except SyntaxError as e:
                self.out(self._traceback(e))
                continue
            if code is not None:
                self.out(self.run(code, "single"))

    def raw(self) -> str:
        self.out(RAW_BANNER)
        while True:
            self.out(">")
            buf = bytearray()
            while True:
                c = self.getc()
                if c == CTRL_A:  # reset the raw REPL
                    self.out(RAW_BANNER + ">")
                    buf.clear()
                elif c == CTRL_B:
                    self.out("\r\n")
                    return "friendly"
                elif c == CTRL_C:
                    buf.clear()
                elif c == CTRL_D:
                    break
                else:
                    buf.append(c)
            self.out("OK")
            if not buf:
                self.out("\r\n")
                return "reset"
            err = self.run(buf.decode("utf-8", "replace"), "exec")
            self.out("\x04" + err + "\x04")

    def serve(self) -> None:
        """pyexec's loop until the host stops the board (EmulatorDone)."""
        mode = "friendly"
        while True:
            mode = self.friendly() if mode == "friendly" else self.raw()
            if mode == "reset":
                self.out("[%s]: soft reboot\r\n" % self.board.build.get("platform", "MicroPython"))
                self.globals = self._fresh()
                self.board.event("soft_reset")
                mode = "friendly"


def serve(board) -> None:
    board.event("repl", uart=board.uart_fd is not None)
    Repl(board, board.uart_fd).serve()
