"""Reader of the INSEE SIRENE stock files: ESS establishments with their positions.

The national stocks (``StockUniteLegale``, ``StockEtablissement``, and optionally INSEE's
``GeolocalisationEtablissement_Sirene_pour_etudes_statistiques``) are several GB each. They are
never loaded into pandas: DuckDB scans them with a memory limit (spilling to a temporary
folder), keeps the legal units flagged ESS (``economieSocialeSolidaireUniteLegale = 'O'``) and
their active establishments, and only that result (about 1.5 million rows nationally) is checked
and projected in pandas.

Stages: headers are checked on a sample (missing column, empty file: refused at once); one
streaming pass per file computes its SHA-256 and checks that it is entirely UTF-8 (a
Windows-1252 file is copied to UTF-8 in the temporary folder, with a warning); then the DuckDB
scans.

Line numbers (header = line 1) are counted by DuckDB while scanning: ``row_number() OVER ()``
runs as a single-threaded streaming pipeline that follows the file order, and the lines DuckDB
rejects as malformed (quarantined) are put back into the count. They are exact for files without
blank lines and without quoted values spanning several lines, which is the case of INSEE's
files. For Parquet files the "line" is the row index + 2, so a Parquet file and its CSV version
report the same numbers.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
from pyproj import Transformer
from pyproj.exceptions import CRSError

from essmap.domain import schema
from essmap.domain.errors import InputFileError
from essmap.domain.nomenclature import family_of_legal_category, sector_of_naf
from essmap.domain.territories import (
    TERRITORIES,
    departements_of_communes,
    epsg_of_territory_codes,
    is_valid_commune_code,
    normalise_departement,
    territory_codes_of_departements,
    territory_of_departement,
)
from essmap.io.readers.common import (
    Quarantine,
    SourceMeta,
    SourceRead,
    canonical_frame,
    check_required_columns,
    clean_text,
    decode_bytes,
    empty_quarantine,
    points_from_lonlat,
    sha256_of,
    siret_problems,
    sniff_delimiter,
    to_float,
)

SOURCE = "sirene"

# --- Official layouts (INSEE "Description des fichiers de stock", API Sirene 3.11) -------------

#: Columns of ``StockUniteLegale_utf8.csv``, in the published order. The last one
#: (NAF 2025 activity) was appended by INSEE in December 2025; older files lack it.
UNITE_LEGALE_COLUMNS: tuple[str, ...] = (
    "siren",
    "statutDiffusionUniteLegale",
    "unitePurgeeUniteLegale",
    "dateCreationUniteLegale",
    "sigleUniteLegale",
    "sexeUniteLegale",
    "prenom1UniteLegale",
    "prenom2UniteLegale",
    "prenom3UniteLegale",
    "prenom4UniteLegale",
    "prenomUsuelUniteLegale",
    "pseudonymeUniteLegale",
    "identifiantAssociationUniteLegale",
    "trancheEffectifsUniteLegale",
    "anneeEffectifsUniteLegale",
    "dateDernierTraitementUniteLegale",
    "nombrePeriodesUniteLegale",
    "categorieEntreprise",
    "anneeCategorieEntreprise",
    "dateDebut",
    "etatAdministratifUniteLegale",
    "nomUniteLegale",
    "nomUsageUniteLegale",
    "denominationUniteLegale",
    "denominationUsuelle1UniteLegale",
    "denominationUsuelle2UniteLegale",
    "denominationUsuelle3UniteLegale",
    "categorieJuridiqueUniteLegale",
    "activitePrincipaleUniteLegale",
    "nomenclatureActivitePrincipaleUniteLegale",
    "nicSiegeUniteLegale",
    "economieSocialeSolidaireUniteLegale",
    "societeMissionUniteLegale",
    "caractereEmployeurUniteLegale",
    "activitePrincipaleNAF25UniteLegale",
)

#: Columns of ``StockEtablissement_utf8.csv``, in the published order (with the address
#: identifier and Lambert coordinates added in 2023, and the NAF 2025 activity appended in
#: December 2025).
ETABLISSEMENT_COLUMNS: tuple[str, ...] = (
    "siren",
    "nic",
    "siret",
    "statutDiffusionEtablissement",
    "dateCreationEtablissement",
    "trancheEffectifsEtablissement",
    "anneeEffectifsEtablissement",
    "activitePrincipaleRegistreMetiersEtablissement",
    "dateDernierTraitementEtablissement",
    "etablissementSiege",
    "nombrePeriodesEtablissement",
    "complementAdresseEtablissement",
    "numeroVoieEtablissement",
    "indiceRepetitionEtablissement",
    "dernierNumeroVoieEtablissement",
    "indiceRepetitionDernierNumeroVoieEtablissement",
    "typeVoieEtablissement",
    "libelleVoieEtablissement",
    "codePostalEtablissement",
    "libelleCommuneEtablissement",
    "libelleCommuneEtrangerEtablissement",
    "distributionSpecialeEtablissement",
    "codeCommuneEtablissement",
    "codeCedexEtablissement",
    "libelleCedexEtablissement",
    "codePaysEtrangerEtablissement",
    "libellePaysEtrangerEtablissement",
    "identifiantAdresseEtablissement",
    "coordonneeLambertAbscisseEtablissement",
    "coordonneeLambertOrdonneeEtablissement",
    "complementAdresse2Etablissement",
    "numeroVoie2Etablissement",
    "indiceRepetition2Etablissement",
    "typeVoie2Etablissement",
    "libelleVoie2Etablissement",
    "codePostal2Etablissement",
    "libelleCommune2Etablissement",
    "libelleCommuneEtranger2Etablissement",
    "distributionSpeciale2Etablissement",
    "codeCommune2Etablissement",
    "codeCedex2Etablissement",
    "libelleCedex2Etablissement",
    "codePaysEtranger2Etablissement",
    "libellePaysEtranger2Etablissement",
    "dateDebut",
    "etatAdministratifEtablissement",
    "enseigne1Etablissement",
    "enseigne2Etablissement",
    "enseigne3Etablissement",
    "denominationUsuelleEtablissement",
    "activitePrincipaleEtablissement",
    "nomenclatureActivitePrincipaleEtablissement",
    "caractereEmployeurEtablissement",
    "activitePrincipaleNAF25Etablissement",
)

#: Columns of INSEE's geolocation file (``;``-separated).
GEOLOCALISATION_COLUMNS: tuple[str, ...] = (
    "siret",
    "x",
    "y",
    "qualite_xy",
    "epsg",
    "plg_qp",
    "plg_iris",
    "plg_zus",
    "plg_qp15",
    "plg_qva",
    "plg_code_commune",
    "distance_precision",
    "qualite_qp",
    "qualite_iris",
    "x_longitude",
    "y_latitude",
)

# --- What the reader needs -------------------------------------------------------------------

#: Legal-unit columns without which the ESS perimeter or the family cannot be known.
UNITE_LEGALE_REQUIRED: tuple[str, ...] = (
    "siren",
    "economieSocialeSolidaireUniteLegale",
    "categorieJuridiqueUniteLegale",
    "denominationUniteLegale",
)
_UNITE_LEGALE_OPTIONAL: tuple[str, ...] = (
    "nomUniteLegale",
    "nomUsageUniteLegale",
    "prenom1UniteLegale",
    "prenomUsuelUniteLegale",
)

_LAMBERT = ("coordonneeLambertAbscisseEtablissement", "coordonneeLambertOrdonneeEtablissement")

#: Establishment columns always required; the Lambert coordinates are required too unless a
#: geolocation file gives the positions (stocks older than 2023 have no coordinates).
ETABLISSEMENT_REQUIRED: tuple[str, ...] = (
    "siren",
    "siret",
    "etatAdministratifEtablissement",
    "codeCommuneEtablissement",
    "activitePrincipaleEtablissement",
    "nomenclatureActivitePrincipaleEtablissement",
    "caractereEmployeurEtablissement",
    "etablissementSiege",
)
_ETABLISSEMENT_OPTIONAL: tuple[str, ...] = (
    "dateCreationEtablissement",
    "trancheEffectifsEtablissement",
    "dateDernierTraitementEtablissement",
    "numeroVoieEtablissement",
    "indiceRepetitionEtablissement",
    "typeVoieEtablissement",
    "libelleVoieEtablissement",
    "codePostalEtablissement",
    "libelleCommuneEtablissement",
    "codePaysEtrangerEtablissement",
    "enseigne1Etablissement",
    "denominationUsuelleEtablissement",
    *_LAMBERT,
)

#: Legal-unit attributes joined to each establishment.
_UL_ATTRIBUTES = ("categorieJuridiqueUniteLegale", "denominationUniteLegale", *_UNITE_LEGALE_OPTIONAL)
#: Establishment columns kept from the scan (the state is only filtered on).
_ETAB_COLUMNS = tuple(
    c for c in (*ETABLISSEMENT_REQUIRED, *_ETABLISSEMENT_OPTIONAL) if c != "etatAdministratifEtablissement"
)

_GEO_WGS84 = ("x_longitude", "y_latitude")
_GEO_PROJECTED = ("x", "y", "epsg")

#: Identifier columns padded back to their width when a Parquet file stores them as integers.
_CODE_WIDTH = {
    "siren": 9,
    "siret": 14,
    "categorieJuridiqueUniteLegale": 4,
    "codeCommuneEtablissement": 5,
    "codePostalEtablissement": 5,
}

#: DuckDB limits: the scans spill to a temporary folder beyond this memory.
DUCKDB_MEMORY_LIMIT = "2GB"
DUCKDB_THREADS = max(1, min(4, os.cpu_count() or 1))
#: Malformed lines kept per file; beyond, the file is refused rather than half read.
MAX_MALFORMED_LINES = 10_000
#: Bytes read per block when hashing, checking or converting a file.
_CHUNK_BYTES = 4 << 20
#: Bytes read to check the header, the delimiter and the encoding.
_SAMPLE_BYTES = 4 << 20

#: Name of the manifest the synthetic generator writes next to its files.
SYNTHETIC_MANIFEST = "essmap-synthetic.json"

NOT_DIFFUSED = "[ND]"
POSITION_STOCK = "stock_lambert"
POSITION_GEOLOC = "geolocalisation"
REASON_NO_COORDINATES = "coordonnées absentes : établissement non géolocalisé"
REASON_SWAPPED = "latitude et longitude inversées"

_REJECT_REASONS = {
    "CAST": "valeur illisible",
    "MISSING COLUMNS": "colonnes manquantes",
    "TOO MANY COLUMNS": "trop de colonnes",
    "UNQUOTED VALUE": "guillemets mal fermés",
    "LINE SIZE OVER MAXIMUM": "ligne trop longue",
    "INVALID ENCODING": "caractère non UTF-8",
    "INVALID STATE": "ligne illisible",
}


# --- Files ---------------------------------------------------------------------------------------


@dataclass
class _Input:
    """One checked input file and how DuckDB must read it."""

    path: Path
    parquet: bool
    columns: list[str]
    types: dict[str, str] = field(default_factory=dict)
    delimiter: str = ","
    encoding: str = "utf-8"  # of the file; "cp1252" files are read from a UTF-8 copy
    read_path: Path | None = None  # that copy
    sha256: str = ""

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def compressed(self) -> bool:
        return self.path.suffix.lower() == ".gz"

    def open_binary(self):
        return gzip.open(self.path, "rb") if self.compressed else open(self.path, "rb")


def _as_paths(value: Path | str | Sequence[Path | str] | None) -> list[Path]:
    if value is None:
        return []
    if isinstance(value, (str, os.PathLike)):
        return [Path(value)]
    return [Path(v) for v in value]


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in (".parquet", ".parq")


def _inspect(path: Path, required: Sequence[str], expected_delimiter: str, warnings: list[str]) -> _Input:
    """Check a file cheaply (header, encoding, delimiter, emptiness) before any scan."""
    name = path.name
    if not path.is_file():
        raise InputFileError(name, "fichier introuvable.", hint=f"vérifiez le chemin « {path} ».")
    if path.suffix.lower() == ".zip":
        raise InputFileError(
            name, "archive ZIP non décompressée.",
            hint="décompressez l'archive publiée par l'INSEE et indiquez le fichier CSV ou Parquet qu'elle contient.",
        )
    if path.stat().st_size == 0:
        raise InputFileError(name, "le fichier est vide.", hint="vérifiez le téléchargement ou l'export.")
    if _is_parquet(path):
        return _inspect_parquet(path, required)
    return _inspect_csv(path, required, expected_delimiter, warnings)


def _inspect_parquet(path: Path, required: Sequence[str]) -> _Input:
    name = path.name
    con = duckdb.connect()
    try:
        described = con.sql(f"DESCRIBE SELECT * FROM read_parquet({_sql_str(path)})").fetchall()
        count = con.sql(f"SELECT count(*) FROM read_parquet({_sql_str(path)})").fetchone()[0]
    except duckdb.Error as exc:
        raise InputFileError(
            name, f"ce n'est pas un fichier Parquet lisible ({_first_line(exc)}).",
            hint="vérifiez le téléchargement, ou fournissez la version CSV publiée par l'INSEE.",
        ) from exc
    finally:
        con.close()
    columns = [str(row[0]) for row in described]
    check_required_columns(columns, required, name)
    if count == 0:
        raise InputFileError(
            name, "le fichier ne contient aucune ligne de données.",
            hint="vérifiez le filtre ou l'export qui a produit ce fichier.",
        )
    return _Input(path, True, columns, types={str(r[0]): str(r[1]) for r in described})


def _read_sample(path: Path) -> tuple[bytes, bool]:
    """First bytes of the file (decompressed for .gz) and whether they are the whole file."""
    with (gzip.open(path, "rb") if path.suffix.lower() == ".gz" else open(path, "rb")) as fh:
        sample = fh.read(_SAMPLE_BYTES + 1)
    complete = len(sample) <= _SAMPLE_BYTES
    if not complete:
        # Cut at a line end so that a multi-byte character is never split.
        sample = sample[: sample.rfind(b"\n") + 1] or sample[:_SAMPLE_BYTES]
    return sample, complete


def _inspect_csv(path: Path, required: Sequence[str], expected_delimiter: str, warnings: list[str]) -> _Input:
    name = path.name
    try:
        sample, complete = _read_sample(path)
    except (OSError, EOFError) as exc:
        raise InputFileError(
            name, f"le fichier ne peut pas être lu ({exc}).", hint="vérifiez le téléchargement."
        ) from exc
    if not sample.strip():
        raise InputFileError(name, "le fichier est vide.", hint="vérifiez le téléchargement ou l'export.")
    decoded = decode_bytes(sample, name)
    warnings.extend(decoded.warnings)
    encoding = "utf-8" if decoded.encoding == "utf-8" else "cp1252"
    text = decoded.text.lstrip("\ufeff")
    lines = text.splitlines()
    header = lines[0]
    delimiter = sniff_delimiter(header)
    if delimiter != expected_delimiter:
        warnings.append(
            f"Fichier « {name} » : séparateur « {delimiter} » détecté au lieu de "
            f"« {expected_delimiter} » (format INSEE) ; le fichier a été lu avec « {delimiter} »."
        )
    columns = [c.strip().strip("\ufeff") for c in next(csv.reader([header], delimiter=delimiter))]
    check_required_columns(columns, required, name)
    if complete and not any(line.strip() for line in lines[1:]):
        raise InputFileError(
            name, "le fichier ne contient que la ligne d'en-tête, aucune ligne de données.",
            row=2, hint="vérifiez le filtre ou l'export qui a produit ce fichier.",
        )
    return _Input(path, False, columns, delimiter=delimiter, encoding=encoding)


def _detect_synthetic(etablissements: Sequence[Path]) -> bool:
    """True when the generator's manifest, next to an establishment file, lists that file."""
    for path in etablissements:
        manifest = path.parent / SYNTHETIC_MANIFEST
        if not manifest.is_file():
            continue
        try:
            files = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
        except (ValueError, OSError, AttributeError):
            continue
        if isinstance(files, list) and path.name in {Path(str(f)).name for f in files}:
            return True
    return False


def _prepare(inp: _Input, spill: Path, warnings: list[str]) -> None:
    """Streaming pass over a file: its SHA-256 and, for CSV, a check that all of it is UTF-8.

    The header check only sampled the start of the file; a Windows-1252 byte further down would
    make DuckDB fail, so the whole file is checked here, in the same pass as the hash (memory
    stays at one block). A Windows-1252 file is then copied to UTF-8 in the temporary folder,
    and DuckDB reads the copy.
    """
    if inp.parquet or inp.compressed or inp.encoding != "utf-8":
        inp.sha256 = sha256_of(inp.path, chunk=_CHUNK_BYTES)
    if not inp.parquet and inp.encoding == "utf-8":
        digest = None if inp.compressed else hashlib.sha256()
        problem = _first_non_utf8(inp, digest)
        if digest is not None:
            inp.sha256 = digest.hexdigest()
        if problem is not None:
            line, column = problem
            where = f"ligne {line}" + (f", colonne « {column} »" if column else "")
            warnings.append(
                f"Fichier « {inp.name} » : encodage non UTF-8 détecté ({where}) ; le fichier a été lu "
                "en Windows-1252 (Latin-1). Vérifiez les accents ou convertissez le fichier en UTF-8."
            )
            inp.encoding = "cp1252"
    if not inp.parquet and inp.encoding != "utf-8":
        inp.read_path = spill / f"{len(list(spill.iterdir()))}_{inp.path.stem}.utf8.csv"
        decoder = codecs.getincrementaldecoder(inp.encoding)(errors="replace")
        with inp.open_binary() as src, open(inp.read_path, "w", encoding="utf-8", newline="") as dst:
            while block := src.read(_CHUNK_BYTES):
                dst.write(decoder.decode(block))
            dst.write(decoder.decode(b"", final=True))


def _first_non_utf8(inp: _Input, digest) -> tuple[int, str | None] | None:
    """Line (header = 1) and column of the first byte that is not UTF-8, or None.

    When ``digest`` is given it is updated with every byte, so the file is read to the end.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    problem: tuple[int, str | None] | None = None
    lines_before = 0
    tail = b""  # bytes of the current line read so far
    with inp.open_binary() as fh:
        while block := fh.read(_CHUNK_BYTES):
            if digest is not None:
                digest.update(block)
            if problem is not None:
                continue
            pending = len(decoder.getstate()[0])  # bytes of a character begun in the previous block
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                data = tail + block[: max(exc.start - pending, 0)]
                problem = _where(inp, lines_before + data.count(b"\n") + 1, data[data.rfind(b"\n") + 1 :])
                if digest is None:
                    break
                continue
            lines_before += block.count(b"\n")
            cut = block.rfind(b"\n")
            tail = block[cut + 1 :] if cut >= 0 else tail + block
    if problem is None:
        try:
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:  # file ends in the middle of a character
            problem = _where(inp, lines_before + 1, tail)
    return problem


def _where(inp: _Input, line: int, line_prefix: bytes) -> tuple[int, str | None]:
    """(line, column name) of a position, from the bytes of its line before it (for messages)."""
    index = line_prefix.decode("cp1252", errors="replace").count(inp.delimiter)
    return line, inp.columns[index] if index < len(inp.columns) else None


def _combined_sha256(inputs: Sequence[_Input]) -> str:
    """SHA-256 of the file, or for several files the SHA-256 of their ordered digests."""
    if len(inputs) == 1:
        return inputs[0].sha256
    return hashlib.sha256("\n".join(i.sha256 for i in inputs).encode("ascii")).hexdigest()


# --- SQL -----------------------------------------------------------------------------------------


def _sql_str(value: object) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _value_sql(inp: _Input, column: str) -> str:
    """The column as trimmed VARCHAR, NULL when blank or absent from the file.

    Identifiers that a Parquet file stores as integers get their leading zeros back.
    """
    if column not in inp.columns:
        return "CAST(NULL AS VARCHAR)"
    expr = f"trim(CAST({_ident(column)} AS VARCHAR))"
    sql_type = inp.types.get(column, "VARCHAR").upper()
    if column in _CODE_WIDTH and any(t in sql_type for t in ("INT", "DECIMAL", "DOUBLE", "FLOAT")):
        expr = f"lpad(CAST(CAST({_ident(column)} AS BIGINT) AS VARCHAR), {_CODE_WIDTH[column]}, '0')"
    return f"nullif({expr}, '')"


def _source_sql(inp: _Input, rejects: str) -> str:
    """``read_csv``/``read_parquet`` of one file, every column as text (CSV) or as stored."""
    if inp.parquet:
        return f"read_parquet({_sql_str(inp.path)}, file_row_number = true)"
    columns = "{" + ", ".join(f"{_sql_str(c)}: 'VARCHAR'" for c in inp.columns) + "}"
    return (
        f"read_csv({_sql_str(inp.read_path or inp.path)}, header = true, auto_detect = false, columns = {columns}, "
        f"delim = {_sql_str(inp.delimiter)}, quote = '\"', escape = '\"', "
        "encoding = 'utf-8', store_rejects = true, "
        f"rejects_table = {_sql_str(rejects + '_errors')}, rejects_scan = {_sql_str(rejects + '_scans')}, "
        f"rejects_limit = {MAX_MALFORMED_LINES})"
    )


def _scan_sql(
    inp: _Input,
    columns: Sequence[str],
    rejects: str,
    *,
    numbered: bool,
    where: Callable[[_Input], str],
    filtered_on: Sequence[str] = (),
) -> str:
    """SELECT of ``columns`` (as text) of one file's rows matching ``where(inp)``.

    ``filtered_on`` names the other columns ``where`` reads.

    With ``numbered``, ``_k`` is the 1-based index of the data row in the file. The row number is
    taken on the raw columns and the conversions come after the filter, so that the single
    ordered pass over a national file does as little work per row as possible.
    """
    source = _source_sql(inp, rejects)
    select = ", ".join(f"{_value_sql(inp, c)} AS {_ident(c)}" for c in columns)
    raw = ", ".join(_ident(c) for c in dict.fromkeys((*columns, *filtered_on)) if c in inp.columns)
    if not numbered:
        return f"SELECT {select} FROM (SELECT {raw} FROM {source}) WHERE {where(inp)}"
    if inp.parquet:
        inner = f"SELECT file_row_number + 1 AS _k, {raw} FROM {source}"
    else:
        inner = f"SELECT row_number() OVER () AS _k, {raw} FROM {source}"
    return f"SELECT _k, {select} FROM ({inner}) WHERE {where(inp)}"


def _departement_sql(inp: _Input) -> str:
    """Département of ``codeCommuneEtablissement`` (as territories.departement_of_commune)."""
    code = f"upper({_value_sql(inp, 'codeCommuneEtablissement')})"
    return (
        f"CASE WHEN regexp_full_match({code}, '[0-9]{{4}}') THEN '0' || substr({code}, 1, 1) "
        f"WHEN starts_with({code}, '97') THEN substr({code}, 1, 3) ELSE substr({code}, 1, 2) END"
    )


class _Scanner:
    """Runs the DuckDB scans of one read, collecting malformed lines into the quarantine."""

    def __init__(self, con: duckdb.DuckDBPyConnection, quarantines: _Quarantines, warnings: list[str]) -> None:
        self.con = con
        self.quarantines = quarantines
        self.warnings = warnings
        self._count = 0
        self.malformed = 0

    def run(self, inp: _Input, sql_of: Callable[[str], str]) -> np.ndarray:
        """Execute ``sql_of(rejects_name)`` for one file; returns its rejected line numbers."""
        self._count += 1
        rejects = f"essmap_rejects_{self._count}"
        try:
            self.con.execute(sql_of(rejects))
            if inp.parquet:
                return np.zeros(0, dtype="int64")
            errors = self.con.sql(
                f"SELECT line, column_name, error_type, csv_line FROM {rejects}_errors ORDER BY line"
            ).df()
        except duckdb.Error as exc:
            raise _duckdb_error(inp, exc) from exc
        if len(errors) >= MAX_MALFORMED_LINES:
            raise InputFileError(
                inp.name, f"au moins {MAX_MALFORMED_LINES} lignes mal formées (nombre de colonnes, guillemets).",
                row=int(errors["line"].iloc[0]),
                hint="vérifiez le séparateur et l'encodage, ou retéléchargez le fichier publié par l'INSEE.",
            )
        errors = errors.drop_duplicates("line")
        if len(errors):
            reasons = errors["error_type"].map(lambda t: _REJECT_REASONS.get(str(t), str(t).lower()))
            columns = errors["column_name"].fillna("").astype(str)
            quarantine = self.quarantines.of(inp.name)
            for (reason, column), part in errors.groupby([reasons, columns], sort=False):
                quarantine.add(
                    part["line"].to_numpy(), column, part["csv_line"].to_numpy(),
                    f"ligne CSV mal formée ({reason}) : ligne ignorée, corrigez-la dans le fichier",
                )
            self.malformed += len(errors)
        return errors["line"].to_numpy(dtype="int64")


def _duckdb_error(inp: _Input, exc: duckdb.Error) -> InputFileError:
    text = str(exc)
    match = re.search(r"Line:?\s*(\d+)", text)
    return InputFileError(
        inp.name, f"le fichier ne peut pas être lu ({_first_line(exc)}).",
        row=int(match.group(1)) if match else None,
        hint="vérifiez que c'est bien un fichier SIRENE de l'INSEE (CSV séparé par des virgules, "
        "ou Parquet) et qu'il n'est pas tronqué.",
    )


def _physical_lines(k: pd.Series, rejected: np.ndarray) -> np.ndarray:
    """File line of the k-th accepted data row (1-based), given the rejected lines (sorted).

    Without rejects it is ``k + 1`` (header = line 1); each rejected line before a row shifts it.
    """
    k = k.to_numpy(dtype="int64")
    if len(rejected) == 0:
        return k + 1
    # accepted rows before the i-th rejected line: rejected[i] - 2 - i (non-decreasing)
    before = np.sort(rejected) - 2 - np.arange(len(rejected))
    return k + 1 + np.searchsorted(before, k, side="left")


class _Quarantines:
    """One :class:`Quarantine` per file, since a read spans several files."""

    def __init__(self) -> None:
        self._by_file: dict[str, Quarantine] = {}

    def of(self, file_name: str) -> Quarantine:
        if file_name not in self._by_file:
            self._by_file[file_name] = Quarantine(SOURCE, file_name)
        return self._by_file[file_name]

    def frame(self) -> pd.DataFrame:
        parts = [q.frame() for q in self._by_file.values() if len(q)]
        if not parts:
            return empty_quarantine()
        return pd.concat(parts, ignore_index=True)

    def __len__(self) -> int:
        return sum(len(q) for q in self._by_file.values())


# --- Public API ----------------------------------------------------------------------------------


def read_sirene(
    unites_legales: Path | Sequence[Path],
    etablissements: Path | Sequence[Path],
    *,
    geolocalisation: Path | Sequence[Path] | None = None,
    departements: Sequence[str] | None = None,
    is_synthetic: bool | None = None,
    progress: Callable[[str, float], None] | None = None,
) -> SourceRead:
    """Read the ESS active establishments of SIRENE stock files, with WGS84 positions.

    ``unites_legales`` / ``etablissements``: ``StockUniteLegale`` / ``StockEtablissement`` files
    (CSV as published, or Parquet), one or several (parts of a stock). ``geolocalisation``:
    INSEE's geolocation file, whose positions win over the stock's Lambert coordinates.
    ``departements`` restricts the read ("13", "2A", "974"). ``is_synthetic`` None means: look
    for the generator's manifest next to the establishment files. ``progress(label, fraction)``
    is called after each stage.

    Whole-file problems raise :class:`InputFileError` before any heavy scan; bad rows go to the
    quarantine with their file line. ``meta.rows_read`` counts the ESS active establishments
    found plus the malformed lines, so that ``rows_read = rows_kept + rows_quarantined``.
    """
    report = progress or (lambda label, fraction: None)
    ul_paths = _as_paths(unites_legales)
    etab_paths = _as_paths(etablissements)
    geo_paths = _as_paths(geolocalisation)
    if not ul_paths or not etab_paths:
        raise ValueError("Indiquez au moins un fichier d'unités légales et un fichier d'établissements SIRENE.")
    deps = _checked_departements(departements)
    warnings: list[str] = []

    report("Vérification des fichiers", 0.0)
    ul_inputs = [_inspect(p, UNITE_LEGALE_REQUIRED, ",", warnings) for p in ul_paths]
    etab_required = ETABLISSEMENT_REQUIRED + (() if geo_paths else _LAMBERT)
    etab_inputs = [_inspect(p, etab_required, ",", warnings) for p in etab_paths]
    geo_inputs = [_inspect_geolocalisation(p, warnings) for p in geo_paths]
    synthetic = _detect_synthetic(etab_paths) if is_synthetic is None else bool(is_synthetic)
    report("Fichiers vérifiés", 0.05)

    quarantines = _Quarantines()
    all_inputs = [*ul_inputs, *etab_inputs, *geo_inputs]
    with tempfile.TemporaryDirectory(prefix="essmap-sirene-") as spill:
        for inp in all_inputs:
            _prepare(inp, Path(spill), warnings)
        report("Encodage vérifié, empreintes calculées", 0.15)
        con = duckdb.connect(
            ":memory:",
            config={
                "memory_limit": DUCKDB_MEMORY_LIMIT,
                "threads": DUCKDB_THREADS,
                "temp_directory": spill,
                "preserve_insertion_order": True,
            },
        )
        try:
            con.execute("SET enable_progress_bar = false")  # no terminal bar in the CLI or the app
            scanner = _Scanner(con, quarantines, warnings)
            _load_unites_legales(scanner, ul_inputs)
            report("Unités légales de l'ESS lues", 0.3)
            frame = _load_etablissements(scanner, etab_inputs, deps)
            report("Établissements actifs de l'ESS lus", 0.7)
            geo = _load_geolocalisation(scanner, geo_inputs) if geo_inputs else None
            if geo_inputs:
                report("Géolocalisation lue", 0.8)
        finally:
            con.close()

    rows_found = len(frame)
    kept = _check_rows(frame, quarantines)
    kept = _place(kept, geo, quarantines, warnings)
    report("Contrôles et positions terminés", 0.9)
    out = _canonical(kept, synthetic)

    meta = SourceMeta(
        source=SOURCE,
        file_name=" + ".join(inp.name for inp in all_inputs),
        sha256=_combined_sha256(all_inputs),
        generation=_generation(frame),
        rows_read=rows_found + scanner.malformed,
        rows_kept=len(out),
        rows_quarantined=len(quarantines),
        is_synthetic=synthetic,
        warnings=warnings,
    )
    report("Lecture SIRENE terminée", 1.0)
    return SourceRead(frame=out, quarantine=quarantines.frame(), meta=meta)


def _checked_departements(departements: Sequence[str] | None) -> list[str] | None:
    if departements is None:
        return None
    if isinstance(departements, str):
        departements = [departements]
    codes = []
    for code in departements:
        norm = normalise_departement(code)
        try:
            territory_of_departement(norm)
        except KeyError:
            raise ValueError(
                f"Département inconnu : « {code} ». Indiquez un code INSEE (\"13\", \"2A\", \"974\")."
            ) from None
        codes.append(norm)
    return codes


def _inspect_geolocalisation(path: Path, warnings: list[str]) -> _Input:
    inp = _inspect(path, ("siret",), ";", warnings)
    has_wgs84 = all(c in inp.columns for c in _GEO_WGS84)
    has_projected = all(c in inp.columns for c in _GEO_PROJECTED)
    if not (has_wgs84 or has_projected):
        check_required_columns(inp.columns, _GEO_WGS84 + _GEO_PROJECTED, inp.name)
    return inp


# --- Scans ---------------------------------------------------------------------------------------


def _load_unites_legales(scanner: _Scanner, inputs: Sequence[_Input]) -> None:
    """Table ``ul``: the legal units flagged ESS (all columns the output needs)."""
    columns = ("siren", *_UL_ATTRIBUTES)
    scanner.con.execute(
        "CREATE TEMP TABLE ul (" + ", ".join(f"{_ident(c)} VARCHAR" for c in columns) + ")"
    )
    names = ", ".join(_ident(c) for c in columns)
    for inp in inputs:

        def sql(rejects: str, inp: _Input = inp) -> str:
            scan = _scan_sql(
                inp, columns, rejects, numbered=False,
                where=lambda i: f"upper({_value_sql(i, 'economieSocialeSolidaireUniteLegale')}) = 'O' "
                f"AND {_value_sql(i, 'siren')} IS NOT NULL",
                filtered_on=("economieSocialeSolidaireUniteLegale",),
            )
            return f"INSERT INTO ul SELECT {names} FROM ({scan})"

        scanner.run(inp, sql)


def _load_etablissements(
    scanner: _Scanner, inputs: Sequence[_Input], deps: list[str] | None
) -> pd.DataFrame:
    """Active establishments of ESS legal units (joined to their unit), with file line numbers."""
    con = scanner.con
    names = _ETAB_COLUMNS
    con.execute(
        "CREATE TEMP TABLE etab (_file INTEGER, _k BIGINT, "
        + ", ".join(f"{_ident(c)} VARCHAR" for c in names) + ")"
    )
    quoted_deps = ", ".join(_sql_str(d) for d in deps or ())

    def where(inp: _Input) -> str:
        sql = (
            f"upper({_value_sql(inp, 'etatAdministratifEtablissement')}) = 'A' "
            f"AND {_value_sql(inp, 'siren')} IN (SELECT siren FROM ul)"
        )
        if deps is not None:
            sql += f" AND ({_departement_sql(inp)}) IN ({quoted_deps})"
        return sql

    rejected: dict[int, np.ndarray] = {}
    for index, inp in enumerate(inputs):

        def sql(rejects: str, inp: _Input = inp, index: int = index) -> str:
            scan = _scan_sql(
                inp, names, rejects, numbered=True, where=where, filtered_on=("etatAdministratifEtablissement",)
            )
            return f"INSERT INTO etab SELECT {index}, * FROM ({scan})"

        rejected[index] = scanner.run(inp, sql)

    frame = _fetch(
        con,
        "SELECT e.*, " + ", ".join(f"u.{_ident(c)}" for c in _UL_ATTRIBUTES)
        + " FROM etab e JOIN (SELECT DISTINCT ON (siren) * FROM ul) u USING (siren) ORDER BY e._file, e._k",
    )
    frame["_file_name"] = frame["_file"].map({i: inp.name for i, inp in enumerate(inputs)}).astype("string")
    frame["_line"] = np.zeros(len(frame), dtype="int64")
    for index, inp in enumerate(inputs):
        mask = (frame["_file"] == index).to_numpy()
        if inp.parquet:
            frame.loc[mask, "_line"] = frame.loc[mask, "_k"].to_numpy(dtype="int64") + 1
        else:
            frame.loc[mask, "_line"] = _physical_lines(frame.loc[mask, "_k"], rejected[index])
    return frame.reset_index(drop=True)


def _load_geolocalisation(scanner: _Scanner, inputs: Sequence[_Input]) -> pd.DataFrame:
    """Rows of the geolocation files for the establishments read, first occurrence per SIRET."""
    con = scanner.con
    columns = ("siret", *_GEO_PROJECTED, *_GEO_WGS84)
    con.execute(
        "CREATE TEMP TABLE geo (_file INTEGER, _k BIGINT, " + ", ".join(f"{_ident(c)} VARCHAR" for c in columns) + ")"
    )
    rejected: dict[int, np.ndarray] = {}
    for index, inp in enumerate(inputs):

        def sql(rejects: str, inp: _Input = inp, index: int = index) -> str:
            scan = _scan_sql(
                inp, columns, rejects, numbered=True,
                where=lambda i: f"{_value_sql(i, 'siret')} IN (SELECT siret FROM etab)",
            )
            return f"INSERT INTO geo SELECT {index}, * FROM ({scan})"

        rejected[index] = scanner.run(inp, sql)
    frame = _fetch(con, "SELECT * FROM geo ORDER BY _file, _k")
    frame["_geo_file"] = frame["_file"].map({i: inp.name for i, inp in enumerate(inputs)}).astype("string")
    frame["_geo_line"] = np.zeros(len(frame), dtype="int64")
    for index, inp in enumerate(inputs):
        mask = (frame["_file"] == index).to_numpy()
        if inp.parquet:
            frame.loc[mask, "_geo_line"] = frame.loc[mask, "_k"].to_numpy(dtype="int64") + 1
        else:
            frame.loc[mask, "_geo_line"] = _physical_lines(frame.loc[mask, "_k"], rejected[index])
    return frame.drop(columns=["_file", "_k"])


def _fetch(con: duckdb.DuckDBPyConnection, query: str) -> pd.DataFrame:
    """Query result as pandas (through Arrow), text columns as ``string``."""
    frame = con.sql(query).to_arrow_table().to_pandas()
    for col in frame.columns:
        if col not in ("_file", "_k"):
            frame[col] = frame[col].astype("string")
    return frame


# --- Row checks and positions --------------------------------------------------------------------


def _quarantine_rows(
    quarantines: _Quarantines, rows: pd.DataFrame, column: str, values: pd.Series, reason: str | pd.Series
) -> None:
    """Send rows to the quarantine of their file (``_file_name``, ``_line``); ``reason`` may vary per row."""
    if rows.empty:
        return
    reasons = reason if isinstance(reason, pd.Series) else pd.Series(reason, index=rows.index)
    files = rows["_file_name"] if "_file_name" in rows else pd.Series("", index=rows.index)
    for (file_name, text), part in rows.groupby([files, reasons], sort=False):
        quarantines.of(str(file_name)).add(
            part["_line"].to_numpy(), column, values.loc[part.index].to_numpy(), str(text)
        )


def _check_rows(frame: pd.DataFrame, quarantines: _Quarantines) -> pd.DataFrame:
    """Identity and place checks; each rejected row is quarantined once, for its first problem."""
    frame = frame.copy()
    frame["siret"] = frame["siret"].fillna("")
    frame["siren"] = frame["siren"].fillna("")

    problems = siret_problems(frame["siret"])
    mismatch = problems.isna() & (frame["siret"].str[:9] != frame["siren"])
    problems = problems.where(~mismatch, "SIRET invalide : ne commence pas par le SIREN " + frame["siren"])
    bad = problems.notna()
    _quarantine_rows(quarantines, frame[bad], "siret", frame["siret"], problems[bad])
    frame = frame[~bad]

    duplicated = frame.duplicated("siret", keep="first")
    if duplicated.any():
        first = frame[~duplicated].drop_duplicates("siret").set_index("siret")
        where = frame.loc[duplicated, "siret"].map(
            lambda s: f"fichier « {first.at[s, '_file_name']} », ligne {first.at[s, '_line']}"
        )
        reasons = "SIRET en double : seule la première occurrence (" + where + ") est conservée"
        _quarantine_rows(quarantines, frame[duplicated], "siret", frame["siret"], reasons)
        frame = frame[~duplicated]

    raw = frame["codeCommuneEtablissement"].fillna("").str.strip().str.upper()
    commune = raw.where(~raw.str.fullmatch(r"\d{4}"), raw.str.zfill(5))
    valid = commune.map(is_valid_commune_code).astype(bool)
    abroad = ~valid & frame["codePaysEtrangerEtablissement"].notna()
    _quarantine_rows(
        quarantines, frame[abroad], "codePaysEtrangerEtablissement", frame["codePaysEtrangerEtablissement"],
        "établissement situé à l'étranger : hors du champ de la carte",
    )
    invalid = ~valid & ~abroad
    _quarantine_rows(
        quarantines, frame[invalid], "codeCommuneEtablissement", frame["codeCommuneEtablissement"],
        "code commune invalide : 5 caractères attendus (chiffres, ou 2A/2B suivis de 3 chiffres)",
    )
    frame = frame[valid].copy()
    frame["code_commune"] = commune[valid]
    frame["code_departement"] = departements_of_communes(frame["code_commune"])
    frame["territoire"] = territory_codes_of_departements(frame["code_departement"]).astype("string")
    uncovered = frame["territoire"] == ""
    _quarantine_rows(
        quarantines, frame[uncovered], "codeCommuneEtablissement", frame["codeCommuneEtablissement"],
        "territoire non couvert par essmap (collectivité d'outre-mer du Pacifique ou code inconnu)",
    )
    return frame[~uncovered]


_TRANSFORMERS: dict[int, Transformer | None] = {}


def _transformer(epsg: int) -> Transformer | None:
    if epsg not in _TRANSFORMERS:
        try:
            _TRANSFORMERS[epsg] = Transformer.from_crs(f"EPSG:{epsg}", "EPSG:4326", always_xy=True)
        except CRSError:
            _TRANSFORMERS[epsg] = None
    return _TRANSFORMERS[epsg]


def _to_lonlat(x: np.ndarray, y: np.ndarray, epsg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised projection to WGS84, one transformer per EPSG code (NaN when impossible)."""
    lon = np.full(len(x), np.nan)
    lat = np.full(len(x), np.nan)
    usable = np.isfinite(x) & np.isfinite(y) & (epsg > 0)
    for code in np.unique(epsg[usable]):
        transformer = _transformer(int(code))
        if transformer is None:
            continue
        rows = usable & (epsg == code)
        if code == 4326:
            lon[rows], lat[rows] = x[rows], y[rows]
        else:
            lon[rows], lat[rows] = transformer.transform(x[rows], y[rows], errcheck=False)
    bad = ~(np.isfinite(lon) & np.isfinite(lat))
    lon[bad] = np.nan
    lat[bad] = np.nan
    return lon, lat


def _inside(territories: pd.Series, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    inside = np.zeros(len(lon), dtype=bool)
    codes = territories.to_numpy(dtype=object)
    for code, territory in TERRITORIES.items():
        rows = codes == code
        if rows.any():
            inside[rows] = territory.contains_lonlat(lon[rows], lat[rows])
    return inside


def _place(
    frame: pd.DataFrame, geo: pd.DataFrame | None, quarantines: _Quarantines, warnings: list[str]
) -> pd.DataFrame:
    """Positions from the geolocation file when it has the SIRET, else from the stock's Lambert
    coordinates; rows without a position or outside their territory are quarantined.

    A problem with a position taken from the geolocation file is reported on that file's line.
    """
    frame = frame.copy()
    frame["epsg_metrique"] = epsg_of_territory_codes(frame["territoire"]).to_numpy()
    raw_x = frame["coordonneeLambertAbscisseEtablissement"]
    raw_y = frame["coordonneeLambertOrdonneeEtablissement"]
    x = to_float(_not_nd(raw_x)).to_numpy(copy=True)
    y = to_float(_not_nd(raw_y)).to_numpy(copy=True)
    epsg = frame["epsg_metrique"].to_numpy(dtype="int64").copy()
    lon, lat = _to_lonlat(x, y, epsg)
    source = np.where(np.isfinite(x) & np.isfinite(y), POSITION_STOCK, "")
    # where a problem with the position is reported
    where_file = frame["_file_name"].copy()
    where_line = frame["_line"].to_numpy(dtype="int64").copy()
    where_column = pd.Series(_LAMBERT[0], index=frame.index, dtype="string")
    where_value = ("x=" + raw_x.fillna("") + " ; y=" + raw_y.fillna("")).astype("string")
    from_wgs84 = np.zeros(len(frame), dtype=bool)

    if geo is not None and len(geo):
        dup = geo.duplicated("siret", keep="first")
        if dup.any():
            warnings.append(
                f"Géolocalisation : {int(dup.sum())} SIRET présents plusieurs fois ; "
                "seule la première ligne de chacun a été utilisée."
            )
        g = geo[~dup].set_index("siret").reindex(frame["siret"].to_numpy())
        g.index = frame.index
        glon, glat = to_float(g["x_longitude"]).to_numpy(), to_float(g["y_latitude"]).to_numpy()
        gx, gy = to_float(g["x"]).to_numpy(), to_float(g["y"]).to_numpy()
        # "2154", or "EPSG:2154" in some exports
        gepsg = pd.to_numeric(g["epsg"].str.extract(r"(\d+)\s*$")[0], errors="coerce").fillna(0).to_numpy(dtype="int64")
        has_wgs84 = np.isfinite(glon) & np.isfinite(glat)
        has_projected = np.isfinite(gx) & np.isfinite(gy) & (gepsg > 0)
        use = has_wgs84 | has_projected
        plon, plat = _to_lonlat(gx, gy, gepsg)
        lon = np.where(has_wgs84, glon, np.where(use, plon, lon))
        lat = np.where(has_wgs84, glat, np.where(use, plat, lat))
        # x, y, epsg as published by the geolocation file (its WGS84 pair when x/y are missing)
        x = np.where(has_projected, gx, np.where(use, glon, x))
        y = np.where(has_projected, gy, np.where(use, glat, y))
        epsg = np.where(has_projected, gepsg, np.where(use, 4326, epsg))
        source = np.where(use, POSITION_GEOLOC, source)
        from_wgs84 = has_wgs84
        where_file = where_file.where(~use, g["_geo_file"])
        where_line = np.where(use, g["_geo_line"].fillna(0).to_numpy(dtype="int64"), where_line)
        where_column = where_column.where(~use, np.where(has_wgs84, "x_longitude", "x"))
        geo_value = np.where(
            has_wgs84,
            "x_longitude=" + g["x_longitude"].fillna("") + " ; y_latitude=" + g["y_latitude"].fillna(""),
            "x=" + g["x"].fillna("") + " ; y=" + g["y"].fillna("") + " ; epsg=" + g["epsg"].fillna(""),
        )
        where_value = where_value.where(~use, geo_value)

    frame["x"], frame["y"], frame["epsg"] = x, y, epsg
    frame["longitude"], frame["latitude"] = lon, lat
    frame["source_position"] = pd.Series(source, index=frame.index, dtype="string")
    report = frame[[]].assign(_file_name=where_file, _line=where_line)

    missing = source == ""
    not_diffused = raw_x.fillna("").str.strip().eq(NOT_DIFFUSED).to_numpy()
    reasons = pd.Series(
        np.where(not_diffused, REASON_NO_COORDINATES + " (coordonnées non diffusibles [ND])", REASON_NO_COORDINATES),
        index=frame.index,
    )
    _quarantine_rows(quarantines, report[missing], _LAMBERT[0], where_value, reasons[missing])

    inside = _inside(frame["territoire"], lon, lat) & ~missing
    outside = ~missing & ~inside
    if outside.any():
        rows = frame[outside]
        o_lon, o_lat, o_x, o_y, o_epsg = lon[outside], lat[outside], x[outside], y[outside], epsg[outside]
        names = rows["territoire"].map(lambda t: TERRITORIES[t].name if t in TERRITORIES else t)
        computed = np.isfinite(o_lon)
        reason = pd.Series(
            [
                f"coordonnées hors du territoire du département ({name}) : point calculé en lon/lat {a:.6f}, {b:.6f}"
                if ok else f"coordonnées inutilisables (EPSG {code} inconnu ou valeurs invalides)"
                for name, a, b, ok, code in zip(names, o_lon, o_lat, computed, o_epsg)
            ],
            index=rows.index,
        )
        # swapped axes: the point falls inside its territory once the two values are exchanged
        swapped_lonlat = _inside(rows["territoire"], o_lat, o_lon) & from_wgs84[outside]
        s_lon, s_lat = _to_lonlat(o_y, o_x, o_epsg)
        swapped_xy = _inside(rows["territoire"], s_lon, s_lat) & ~from_wgs84[outside] & ~swapped_lonlat
        reason[swapped_lonlat] = REASON_SWAPPED + " (x_longitude et y_latitude échangées) : corrigez le fichier"
        reason[swapped_xy] = "abscisse et ordonnée inversées (x et y échangés) : corrigez le fichier"
        for column, part in report[outside].groupby(where_column[outside], sort=False):
            _quarantine_rows(quarantines, part, str(column), where_value, reason[part.index])
    return frame[inside]


def _not_nd(values: pd.Series) -> pd.Series:
    return values.where(values.fillna("").str.strip() != NOT_DIFFUSED, pd.NA)


# --- Output --------------------------------------------------------------------------------------


def _text(frame: pd.DataFrame, column: str) -> pd.Series:
    return clean_text(_not_nd(frame[column]))


def _canonical(frame: pd.DataFrame, synthetic: bool) -> gpd.GeoDataFrame:
    """The canonical ``etablissements`` columns (schema.ETABLISSEMENTS) with point geometry."""
    out = pd.DataFrame(index=frame.index)
    out["siret"] = frame["siret"]
    out["siren"] = frame["siren"]
    # natural persons have no denomination: first name and (usage) name
    person = _join_words(
        _text(frame, "prenomUsuelUniteLegale").fillna(_text(frame, "prenom1UniteLegale")),
        _text(frame, "nomUsageUniteLegale").fillna(_text(frame, "nomUniteLegale")),
    )
    out["denomination"] = (
        _text(frame, "denominationUniteLegale")
        .fillna(person)
        .fillna(_text(frame, "denominationUsuelleEtablissement"))
        .fillna(_text(frame, "enseigne1Etablissement"))
    )
    out["enseigne"] = _text(frame, "enseigne1Etablissement").fillna(_text(frame, "denominationUsuelleEtablissement"))
    out["categorie_juridique"] = frame["categorieJuridiqueUniteLegale"]
    out["famille"] = family_of_legal_category(frame["categorieJuridiqueUniteLegale"])
    out["activite_naf"] = frame["activitePrincipaleEtablissement"]
    out["nomenclature_naf"] = frame["nomenclatureActivitePrincipaleEtablissement"]
    out["secteur"] = sector_of_naf(
        frame["activitePrincipaleEtablissement"], frame["nomenclatureActivitePrincipaleEtablissement"]
    )
    out["employeur"] = frame["caractereEmployeurEtablissement"].fillna("").str.upper().eq("O").astype(bool)
    out["tranche_effectifs"] = frame["trancheEffectifsEtablissement"]
    out["siege"] = frame["etablissementSiege"].fillna("").str.lower().isin(["true", "1", "o", "oui"]).astype(bool)
    out["date_creation"] = frame["dateCreationEtablissement"].str[:10]
    number = frame["numeroVoieEtablissement"].fillna("") + frame["indiceRepetitionEtablissement"].fillna("")
    out["adresse"] = _join_words(
        clean_text(_not_nd(number)), _text(frame, "typeVoieEtablissement"), _text(frame, "libelleVoieEtablissement")
    )
    out["code_postal"] = _not_nd(frame["codePostalEtablissement"])
    out["libelle_commune"] = _text(frame, "libelleCommuneEtablissement")
    out["code_commune"] = frame["code_commune"]
    out["code_departement"] = frame["code_departement"]
    for col in ("x", "y", "epsg", "source_position", "territoire", "epsg_metrique", "longitude", "latitude"):
        out[col] = frame[col]
    out["is_synthetic"] = synthetic
    geometry = points_from_lonlat(out["longitude"], out["latitude"])
    return canonical_frame(out, schema.ETABLISSEMENTS, geometry)


def _join_words(*parts: pd.Series) -> pd.Series:
    """Space-joined non-empty parts (vectorised); <NA> when all are empty."""
    joined = parts[0].astype("string").fillna("")
    for part in parts[1:]:
        joined = joined + " " + part.astype("string").fillna("")
    joined = joined.str.replace(r"\s+", " ", regex=True).str.strip()
    return joined.where(joined != "", pd.NA).astype("string")


def _generation(frame: pd.DataFrame) -> str:
    """Millésime: month (YYYY-MM) of the latest ``dateDernierTraitementEtablissement`` read."""
    dates = frame["dateDernierTraitementEtablissement"].dropna().str[:7]
    dates = dates[dates.str.fullmatch(r"\d{4}-\d{2}").fillna(False)]
    return str(dates.max()) if len(dates) else ""
