"""Child processes that run stages and exports for the GUI (Qt-free: the child never loads Qt).

Why a process: a stage that trains with torch in a thread of the GUI process holds the GIL in
bursts and the window stutters; in a child process the GUI keeps its interpreter to itself.
"""
