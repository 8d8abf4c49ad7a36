// sigprof_disposition.h: SIGPROF's disposition while spprof samples with it.
//
// The one owner of SIGPROF: installing spprof's handler (signal_handler.h)
// at start, keeping the disposition the program believes it has (what
// foreign SIGPROFs get, see ProgramDisposition), putting it back at stop,
// around exec and in a fork child. spprof/_signals.py is the Python side
// (signal.signal and signal.getsignal for SIGPROF while a session runs);
// the timers themselves are sampler.h's. GIL held for every call.
#pragma once

#include <string>

namespace spprof {

// Install our SIGPROF handler. With `take_over` false, refuses (returns
// false and sets `error`) if the program already has a SIGPROF handler.
// The disposition found becomes the one the program believes it has
// (ProgramDisposition in signal_handler.h).
bool install_signal_handler(bool take_over, std::string* error);

// While our handler is installed, with the GIL held: the program has just
// installed a SIGPROF disposition of its own (spprof/_signals.py, through
// Python's signal.signal). Put our handler back in its place and make what
// the program installed the disposition it believes it has (SIG_DFL instead
// when `believe_default`: SIG_DFL itself must never be installed while our
// timers run, their next signal would end the process). False, and nothing
// done, when our handler is not installed.
bool reclaim_signal_handler(bool believe_default);

// After our timers are deleted: discard every pending SIGPROF, then, if our
// handler is still installed, put back exactly the disposition the program
// believes it has (the one before install, or the one it installed since)
// and return true. If someone replaced our handler during the session,
// theirs stays and this returns false.
bool restore_signal_handler();

// The program is about to exec (os.exec*, seen by an audit hook): our
// timers are already disarmed. Discard every pending SIGPROF and put the
// disposition the program believes it has in place of our handler, so the
// new image inherits the program's own (a handler becomes SIG_DFL there;
// SIG_IGN stays) and no signal of ours. False if our handler was not
// installed.
bool suspend_signal_handler_for_exec();
// The exec failed and the program goes on: our handler back, what was
// installed meanwhile becoming what the program believes it has.
void resume_signal_handler_after_exec();

// In a fork child: the same without waiting (the child has no timers and
// no pending signals). Idempotent.
void restore_signal_handler_after_fork();

// What the last restore returned.
bool restored_program_disposition();

// The kernel's SIGPROF disposition: "spprof", "default", "ignore",
// "handler" (someone else's).
const char* sigprof_disposition_name();

}  // namespace spprof
