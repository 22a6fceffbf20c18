"""What the stations measure, as data: one row per parameter, turned into kernel indicators by the pack.

Physical ranges become the indicators' min/max, so the kernel's ingest keeps an impossible value but marks it
bad (quality 2) and leaves it out of rollups; the AQI engine skips it too.
"""

from __future__ import annotations

from dataclasses import dataclass

from saola.packs.definitions import IndicatorDefinition

DOMAIN = "environment"
STATION_KINDS: tuple[str, ...] = ("air", "water", "weather", "hydro")
ENTITY_TYPE = {"air": "env.air_station", "water": "env.water_station", "weather": "env.weather_station",
               "hydro": "env.hydro_station"}
KIND_OF_TYPE = {v: k for k, v in ENTITY_TYPE.items()}


@dataclass(frozen=True)
class Parameter:
    """A measured parameter: its key, indicator code, names, unit, physical range and station kinds."""

    key: str
    name_vi: str
    name_en: str
    unit: str
    low: float
    high: float
    kinds: tuple[str, ...]
    direction: str = "lower_is_better"

    @property
    def code(self) -> str:
        """The indicator code, e.g. env.pm25."""
        return f"env.{self.key}"


PARAMETERS: tuple[Parameter, ...] = (
    # air (µg/m³; CO in µg/m³ as Vietnamese stations report it)
    Parameter("pm25", "Bụi PM2.5", "PM2.5", "µg/m³", 0, 1000, ("air",)),
    Parameter("pm10", "Bụi PM10", "PM10", "µg/m³", 0, 2000, ("air",)),
    Parameter("tsp", "Tổng bụi lơ lửng (TSP)", "Total suspended particles", "µg/m³", 0, 5000, ("air",)),
    Parameter("so2", "SO2", "Sulphur dioxide", "µg/m³", 0, 5000, ("air",)),
    Parameter("no2", "NO2", "Nitrogen dioxide", "µg/m³", 0, 5000, ("air",)),
    Parameter("co", "CO", "Carbon monoxide", "µg/m³", 0, 200000, ("air",)),
    Parameter("o3", "O3", "Ozone", "µg/m³", 0, 2000, ("air",)),
    # weather
    Parameter("temperature", "Nhiệt độ không khí", "Air temperature", "°C", -20, 50, ("air", "weather"), "neutral"),
    Parameter("humidity", "Độ ẩm", "Relative humidity", "%", 0, 100, ("air", "weather"), "neutral"),
    Parameter("rainfall", "Lượng mưa", "Rainfall", "mm", 0, 500, ("weather", "hydro"), "neutral"),
    Parameter("wind_speed", "Tốc độ gió", "Wind speed", "m/s", 0, 75, ("air", "weather"), "neutral"),
    Parameter("wind_direction", "Hướng gió", "Wind direction", "°", 0, 360, ("air", "weather"), "neutral"),
    Parameter("pressure", "Áp suất khí quyển", "Air pressure", "hPa", 800, 1100, ("weather",), "neutral"),
    # hydrology
    Parameter("water_level", "Mực nước", "Water level", "cm", -1000, 10000, ("hydro",), "neutral"),
    Parameter("discharge", "Lưu lượng", "Discharge", "m³/s", 0, 100000, ("hydro",), "neutral"),
    # surface water
    Parameter("ph", "pH", "pH", "", 0, 14, ("water",), "neutral"),
    Parameter("do", "Ôxy hòa tan (DO)", "Dissolved oxygen", "mg/L", 0, 25, ("water",), "higher_is_better"),
    Parameter("bod5", "BOD5", "BOD5", "mg/L", 0, 2000, ("water",)),
    Parameter("cod", "COD", "COD", "mg/L", 0, 5000, ("water",)),
    Parameter("tss", "Tổng chất rắn lơ lửng (TSS)", "Total suspended solids", "mg/L", 0, 20000, ("water",)),
    Parameter("nh4_n", "Amoni (NH4+ tính theo N)", "Ammonium (as N)", "mg/L", 0, 1000, ("water",)),
    Parameter("no3_n", "Nitrat (NO3- tính theo N)", "Nitrate (as N)", "mg/L", 0, 1000, ("water",)),
    Parameter("no2_n", "Nitrit (NO2- tính theo N)", "Nitrite (as N)", "mg/L", 0, 100, ("water",)),
    Parameter("po4_p", "Phosphat (PO4 3- tính theo P)", "Phosphate (as P)", "mg/L", 0, 100, ("water",)),
    Parameter("coliform", "Tổng Coliform", "Total coliform", "MPN/100mL", 0, 1e9, ("water",)),
    Parameter("ecoli", "E. coli", "E. coli", "MPN/100mL", 0, 1e9, ("water",)),
    Parameter("water_temperature", "Nhiệt độ nước", "Water temperature", "°C", 0, 45, ("water",), "neutral"),
    Parameter("turbidity", "Độ đục", "Turbidity", "NTU", 0, 10000, ("water",)),
)
BY_KEY = {p.key: p for p in PARAMETERS}
BY_CODE = {p.code: p for p in PARAMETERS}
AQI_POLLUTANT_OF_CODE = {f"env.{k}": k for k in ("pm25", "pm10", "o3", "no2", "so2", "co")}
QCVN05_OF_CODE = {f"env.{k}": k for k in ("pm25", "pm10", "o3", "no2", "so2", "co", "tsp")}
WATER_KEYS = tuple(p.key for p in PARAMETERS if "water" in p.kinds)

# Indices the pack computes and writes back through the kernel's ingest, so rules, rollups and dashboards see them.
AQI_VN = "env.aqi_vn"
AQI_VN_DAY = "env.aqi_vn_day"
AQI_US = "env.aqi_us"
AQI_US_DAY = "env.aqi_us_day"
QCVN_EXCEEDANCES = "env.qcvn05_exceedances"
SENSORS_STUCK = "env.sensors_stuck"
DERIVED = (AQI_VN, AQI_VN_DAY, AQI_US, AQI_US_DAY, QCVN_EXCEEDANCES, SENSORS_STUCK)


def indicator_definitions() -> list[IndicatorDefinition]:
    """Every parameter as an entity indicator, plus the indices the pack computes."""
    out = [IndicatorDefinition(code=p.code, name_vi=p.name_vi, name_en=p.name_en, unit=p.unit, domain=DOMAIN,
                               aggregation="avg", direction=p.direction, periodicity="realtime",  # type: ignore[arg-type]
                               subject_kind="any", min_value=p.low, max_value=p.high,
                               description=f"Đo tại trạm: {', '.join(p.kinds)}")
           for p in PARAMETERS]
    aqi = {"min_value": 0, "max_value": 500, "aggregation": "last", "direction": "lower_is_better",
           "periodicity": "hour", "subject_kind": "entity", "domain": DOMAIN, "unit": ""}
    out += [
        IndicatorDefinition(code=AQI_VN, name_vi="VN_AQI giờ", name_en="VN_AQI (hourly)",
                            thresholds={"Trung bình": 51, "Kém": 101, "Xấu": 151, "Rất xấu": 201, "Nguy hại": 301},
                            description="Quyết định 1459/QĐ-TCMT; NowCast cho PM2.5/PM10; tính khi số liệu đến",
                            **aqi),  # type: ignore[arg-type]
        IndicatorDefinition(code=AQI_VN_DAY, name_vi="VN_AQI ngày", name_en="VN_AQI (daily)",
                            description="Giá trị của ngày (giờ Việt Nam) tính đến thời điểm đọc; giá trị cuối ngày là "
                                        "AQI ngày", **{**aqi, "periodicity": "day"}),  # type: ignore[arg-type]
        IndicatorDefinition(code=AQI_US, name_vi="AQI Hoa Kỳ (US EPA) giờ", name_en="US EPA AQI (hourly)",
                            description="US EPA, bản sửa đổi 2024; NowCast cho bụi", **aqi),  # type: ignore[arg-type]
        IndicatorDefinition(code=AQI_US_DAY, name_vi="AQI Hoa Kỳ (US EPA) ngày", name_en="US EPA AQI (daily)",
                            **{**aqi, "periodicity": "day"}),  # type: ignore[arg-type]
        IndicatorDefinition(code=QCVN_EXCEEDANCES, name_vi="Số thông số vượt QCVN 05:2023",
                            name_en="Parameters above QCVN 05:2023", unit="thông số", domain=DOMAIN,
                            aggregation="max", direction="lower_is_better", subject_kind="entity", min_value=0,
                            max_value=50),
        IndicatorDefinition(code=SENSORS_STUCK, name_vi="Số cảm biến bị treo", name_en="Stuck sensors",
                            unit="cảm biến", domain=DOMAIN, aggregation="max", direction="lower_is_better",
                            subject_kind="entity", min_value=0, max_value=50),
    ]
    return out
