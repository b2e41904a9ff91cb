"""click in French: the help pages and the usage errors a user of ``essmap`` reads.

click writes its own texts (``Usage:``, ``Options``, ``Show this message and exit.``, ``Error: No such
option``...) in English through :mod:`gettext`, which would need a catalogue and a French locale on
every machine. The command line's classes here write them in French instead: help headings through
the formatter, errors from click's exceptions, whose details are its pinned English sentences matched
in :data:`DETAILS` (a detail not matched is shown as click wrote it; the tests cover the usual ones).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, NoReturn

import click

HELP_TEXT = "Afficher cette aide et quitter."
HEADINGS = {"Options": "Options", "Commands": "Commandes", "Positional arguments": "Arguments"}

#: click's English details (version pinned in pyproject.toml) and their French.
DETAILS: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(pattern), french) for pattern, french in (
    (r"^(.+) is not in the range (.+)\.$", r"\1 n'est pas dans l'intervalle \2."),
    (r"^'(.*)' is not a valid float(?: range)?\.$", r"« \1 » n'est pas un nombre."),
    (r"^'(.*)' is not a valid integer(?: range)?\.$", r"« \1 » n'est pas un nombre entier."),
    (r"^(?:File|Directory|Path) '(.*)' does not exist\.$", r"« \1 » n'existe pas."),
    (r"^(?:File|Path) '(.*)' is a directory\.$", r"« \1 » est un dossier, pas un fichier."),
    (r"^(?:Directory|Path) '(.*)' is a file\.$", r"« \1 » est un fichier, pas un dossier."),
    (r"^Option '(.+)' requires an argument\.$", r"l'option \1 attend une valeur."),
    (r"^Option '(.+)' requires (\d+) arguments\.$", r"l'option \1 attend \2 valeurs."),
    (r"^Option '(.+)' does not take a value\.$", r"l'option \1 ne prend pas de valeur."),
    (r"^Got unexpected extra arguments? \((.*)\)$", r"argument(s) en trop : \1."),
    (r"^No such command '(.+)'\. Did you mean '(.+)'\?$", r"commande inconnue : « \1 ». Vouliez-vous dire « \2 » ?"),
    (r"^No such command '(.+)'\.$", r"commande inconnue : « \1 »."),
    (r"^Missing command\.$", "commande manquante."),
))


def french_detail(text: str) -> str:
    for pattern, french in DETAILS:
        if pattern.match(text):
            return pattern.sub(french, text)
    return text


def _names(param: click.Parameter | None, ctx: click.Context | None) -> str:
    if param is None:
        return ""
    if isinstance(param, click.Argument):
        return param.make_metavar(ctx) if ctx is not None else (param.name or "").upper()
    return " / ".join(param.opts)


def error_message(exc: click.ClickException) -> str:
    """The French sentence of a usage error, without the « Erreur : » prefix."""
    ctx = getattr(exc, "ctx", None)
    if isinstance(exc, click.NoSuchOption):
        suggestion = f" Vouliez-vous dire {' ou '.join(sorted(exc.possibilities))} ?" if exc.possibilities else ""
        return f"option inconnue : {exc.option_name}.{suggestion}"
    if isinstance(exc, click.MissingParameter):
        kind = "argument manquant" if isinstance(exc.param, click.Argument) else "option manquante"
        return f"{kind} : « {_names(exc.param, ctx)} »."
    if isinstance(exc, click.BadParameter):
        hint = exc.param_hint if isinstance(exc.param_hint, str) else _names(exc.param, ctx)
        where = f" pour {hint}" if hint else ""
        return f"valeur invalide{where} : {french_detail(exc.message)}"
    return french_detail(exc.format_message())


class FrenchHelpFormatter(click.HelpFormatter):
    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args, "Utilisation : " if prefix is None else prefix)

    def write_heading(self, heading: str) -> None:
        # French typography: a space before the colon
        self.write(f"{'':>{self.current_indent}}{HEADINGS.get(heading, heading)} :\n")

    def write_dl(self, rows: Iterable[tuple[str, str]], col_max: int = 30, col_spacing: int = 2) -> None:
        super().write_dl([(term, text.replace("[default: ", "[défaut : ").replace("default: ", "défaut : ")
                           .replace("required", "obligatoire")) for term, text in rows], col_max, col_spacing)


class FrenchContext(click.Context):
    formatter_class = FrenchHelpFormatter


class FrenchCommand(click.Command):
    """A command whose help pages and help option read in French (groups too: :class:`FrenchGroup`)."""

    context_class = FrenchContext

    def get_help_option(self, ctx: click.Context) -> click.Option | None:
        option = super().get_help_option(ctx)
        if option is not None:
            option.help = HELP_TEXT
        return option


class FrenchGroup(FrenchCommand, click.Group):
    """The ``essmap`` group: its commands and sub-groups French too, usage errors in French on stderr
    with the command to get help, exit status 2 as click's."""

    command_class = FrenchCommand
    group_class = type  # sub-groups of the same class

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            status = super().main(args, prog_name, complete_var, False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            click.echo(exc.ctx.get_help() if exc.ctx is not None else "", err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            _usage_error(exc)
        except click.ClickException as exc:
            click.echo(f"Erreur : {error_message(exc)}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Interrompu.", err=True)
            sys.exit(1)
        sys.exit(status if isinstance(status, int) else 0)


def _usage_error(exc: click.UsageError) -> NoReturn:
    ctx = exc.ctx
    if ctx is not None:
        click.echo(ctx.get_usage(), err=True)
        click.echo(f"Aide : « {ctx.command_path} -h ».", err=True)
    click.echo(f"Erreur : {error_message(exc)}", err=True)
    sys.exit(exc.exit_code)
