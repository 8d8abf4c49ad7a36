"""Frozen record classes that behave as frozen dataclasses, without importing
``dataclasses`` when spprof is imported.

``dataclasses`` imports ``inspect`` (and with it ``ast``, ``dis``,
``tokenize``): more time than the rest of ``import spprof`` together. The
records a session produces (``Frame``, ``Sample``, ``ProfilerStats``) are
therefore written out by hand (fields as annotations, ``__slots__`` where
wanted, an ``__init__``), and :func:`frozen_record` adds what
``@dataclass(frozen=True)`` would: ``__repr__``, ``__eq__``, ``__hash__``,
``__match_args__``, ``__replace__``, assignment and deletion raising
``dataclasses.FrozenInstanceError``, and pickling for slotted classes.

``dataclasses``' own functions (``fields``, ``asdict``, ``astuple``,
``replace``, ``is_dataclass``) work on these classes: they look for
``__dataclass_fields__``, which is built the first time anything asks for
it, by which time the caller has imported ``dataclasses`` itself.
"""

from __future__ import annotations

from _operator import attrgetter

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any, TypeVar

    T = TypeVar("T", bound=type)

__all__ = ["frozen_record"]


def frozen_record(cls: T) -> T:
    """Complete ``cls`` as a frozen record. Its fields are its annotations,
    in order; their defaults are those of the hand-written ``__init__``
    (which must take the fields in the same order, and set them with
    ``object.__setattr__``)."""
    names = tuple(cls.__annotations__)
    values = attrgetter(*names) if len(names) > 1 else (lambda self: (getattr(self, names[0]),))
    init = cls.__init__
    init.__annotations__["return"] = None  # as dataclasses' __init__ says
    defaults = init.__defaults__ or ()
    field_defaults = dict(zip(names[len(names) - len(defaults) :], defaults))
    slotted = "__slots__" in cls.__dict__

    def __repr__(self: Any) -> str:
        body = ", ".join(f"{n}={v!r}" for n, v in zip(names, values(self)))
        return f"{self.__class__.__qualname__}({body})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return values(self) == values(other)
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(values(self))

    def __setattr__(self: Any, name: str, value: object) -> None:
        if type(self) is cls or name in names:
            raise _frozen_error(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise _frozen_error(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    def __replace__(self: Any, /, **changes: object) -> Any:
        kwargs = dict(zip(names, values(self)))
        kwargs.update(changes)
        return self.__class__(**kwargs)

    methods: dict[str, Any] = {
        "__repr__": __repr__,
        "__eq__": __eq__,
        "__hash__": __hash__,
        "__setattr__": __setattr__,
        "__delattr__": __delattr__,
        "__replace__": __replace__,
    }
    if slotted:
        # Without these, unpickling a slotted class sets its slots with
        # setattr, which a frozen class refuses.
        def __getstate__(self: Any) -> list[object]:
            return list(values(self))

        def __setstate__(self: Any, state: list[object]) -> None:
            for name, value in zip(names, state):
                object.__setattr__(self, name, value)

        methods["__getstate__"] = __getstate__
        methods["__setstate__"] = __setstate__
    for name, fn in methods.items():
        fn.__qualname__ = f"{cls.__qualname__}.{name}"
        setattr(cls, name, fn)
    cls.__match_args__ = names
    for attr in ("__dataclass_fields__", "__dataclass_params__"):
        setattr(cls, attr, _DataclassInfo(attr, cls, names, field_defaults))
    return cls


def _frozen_error(message: str) -> Exception:
    import dataclasses  # the program is assigning to a frozen field

    return dataclasses.FrozenInstanceError(message)


class _DataclassInfo:
    """``__dataclass_fields__`` or ``__dataclass_params__`` of a record, made
    on first access from a dataclass of the same fields; the class then
    holds the real values in place of both descriptors."""

    def __init__(self, attr: str, cls: type, names: tuple[str, ...], defaults: dict[str, object]):
        self.attr, self.cls, self.names, self.defaults = attr, cls, names, defaults

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        import dataclasses  # asked for by dataclasses or a tool that imitates it

        cls = self.cls
        spec: list[Any] = []
        for name in self.names:
            kind = cls.__annotations__[name]
            if name in self.defaults:
                spec.append((name, kind, dataclasses.field(default=self.defaults[name])))
            else:
                spec.append((name, kind))
        twin = dataclasses.make_dataclass(cls.__name__, spec, frozen=True)
        type.__setattr__(cls, "__dataclass_fields__", twin.__dataclass_fields__)
        type.__setattr__(cls, "__dataclass_params__", twin.__dataclass_params__)
        return cls.__dict__[self.attr]
